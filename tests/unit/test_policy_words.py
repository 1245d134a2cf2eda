"""A policy in words (rules.words): every rule of every shipped policy as one sentence with its
id, group and line; every operator of the `when:` language and every effect said, word for word,
for a policy written to hold them all; and no threshold of a condition left out of its sentence."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rules.policy
from rules.policy import Effects, Policy
from rules.validate import load_policy_bytes, policy_schema
from rules.words import GROUPS, OPERATORS, RuleInWords, in_words, send_in_words
from rules.yaml_lines import load_yaml
from tests.support import ROOT

SHIPPED = sorted(p for p in (ROOT / "policies").glob("*.yaml") if "policy" in load_yaml(p.read_bytes()).data)

# Every operator, every field kind, `all`/`any`/`not`, every effect, decay, caps, priority, routing
# with and without `when`, a breach that takes three steps, delivery manners and topics. It
# passes validation: each construct is one a policy can really hold.
EVERY = """\
policy: every-construct
version: 3
owners: {marketing: [m@example.com], sales: [s@example.com]}
states: [captured, scored, nurturing, sales-ready, derailed, disqualified, converted]
events: [trial_started]
lists:
  free_mail: [gmail.com, yahoo.com]
  big: [a1, a2, a3, a4, a5, a6, a7, a8, a9, a10]
profile: {role: text, budget: number, company_size: number, country: text, zip: text, consent: boolean,
          need: text, timeline: text, segment: text, tz: text}
content: [welcome, guide, promo-a, promo-b, receipt, nudge]
topics: [guides, news]
scoring:
  fit_cap: 80
  engagement_cap: 90
  decay: {half_life: 21d}
  fit:
    - {id: vp, bant: authority, when: {lead.role: vp}, points: 30}
    - {id: size-fifty, when: {lead.company_size: {eq: 50}}, points: 1}
    - {id: budget-band, bant: budget, when: {lead.budget: {gt: 1000, lte: 2.5e5}}, points: 12.5}
    - {id: small, when: {lead.company_size: {gte: 1, lt: 10, ne: 5}}, points: -5}
    - {id: not-us, when: {lead.country: {ne: US}}, points: 2}
    - {id: roles, when: {lead.role: {in: [director, 7, true]}}, points: 3}
    - {id: not-roles-1, when: {lead.role: {not_in: [student]}}, points: 0}
    - {id: not-roles-2, when: {lead.role: {not_in: [student, intern]}}, points: 1}
    - {id: not-roles-3, when: {lead.role: {not_in: [student, intern, bot]}}, points: 1}
    - {id: free-mail, when: {lead.email_domain: {in_list: free_mail}}, points: -10}
    - {id: paid-mail, when: {lead.email_domain: {not_in_list: big}}, points: 4}
    - {id: eu-zip, when: {lead.zip: {prefix: "50"}, lead.email: {suffix: .edu}}, points: 1}
    - {id: need, bant: need, when: {lead.need: {exists: true}, lead.timeline: {exists: false}}, points: 15}
    - {id: consent-text, when: {lead.consent: true, lead.zip: "50", lead.country: "it's"}, points: 1}
  engagement:
    - {id: views, on: [page_view, email_click], when: {event.path: {prefix: /docs}, lead.role: vp},
       points: 2, signal: interest, cap: 10, decay: {half_life: 1.5h}}
    - {id: careers, on: page_view, when: {event.path: {prefix: /careers}}, points: -10, signal: interest,
       cap: 20, decay: none}
    - {id: trial, on: trial_started, points: 1, signal: intent}
    - {id: big-order, on: form_submit, when: {event.amount: {gte: 500}, score.fit: {gt: 20}}, points: 25,
       signal: intent, cap: 50, decay: {half_life: 14d}}
rules:
  - id: junk
    priority: 100
    when: {lead.email_domain: {in_list: free_mail}, state: {ne: disqualified}}
    then: {disqualify: free mail}
  - id: score-new
    priority: 50
    when: {state: captured}
    then: {transition: scored}
  - id: either
    priority: -5
    when:
      state: nurturing
      any:
        - {score.total: {gte: 90}}
        - {score.bant: {gte: 3}, count.any.1h: {gt: 2}}
    then: {transition: sales-ready, handoff: {queue: fast-lane, sla: 4h}}
  - id: negated
    when:
      not: {lead.role: {in: [student, intern]}, score.interest: {lt: 10}}
      all:
        - {state: {in: [scored, nurturing]}}
        - {track: {ne: awareness}}
    then: {track: awareness, send: welcome, schedule: 3d}
  - id: on-track
    when: {track: {exists: true}, handoff_open: true, in_state_for: {lt: 2w}}
    then: {stop_track: true, handoff: {sla: 24h}}
  - id: off-track
    when: {track: {exists: false}, handoff_open: false, inactive_for: {gt: 12h},
           count.page_view.7d: {eq: 1}}
    then: {set: {quiet: true, tier: gold, level: 2, vip: false, note: null}, reason: went quiet}
  - id: events
    when: {event.type: {not_in: [check, sla_breach]}, event.source: webinar, count.email_open.30d: {lt: 3}}
    then: {send: nudge}
  - id: facts
    when: {facts.recycled: {ne: true}, facts.segment: enterprise, facts.vip: true, facts.level: {lte: 3},
           state: {not_in: [converted, disqualified]}}
    then: {handoff: true}
  - id: nothing-but-time
    when: {event.type: {ne: check}, in_state_for: {gte: 1d}, inactive_for: {lte: 30m}}
    then: {reason: just a note}
nurture:
  requires_consent: consent
  tracks:
    awareness:
      steps:
        - {after: 0d, send: welcome}
        - {after: 1d, send: guide}
        - {after: 2w, send: nudge}
      on_exhausted: {send: guide, transition: derailed}
    single:
      steps: [{after: 90s, send: guide}]
routing:
  - id: enterprise
    when: {lead.company_size: {gte: 1000}}
    queue: enterprise
  - id: rest
    queue: everyone
handoff:
  queue: account-executives
  sla: 48h
  on_accept: {transition: converted}
  on_reject: {transition: nurturing, track: awareness}
  on_breach: {reassign: next, then: {reassign: next, then: {escalate_to: sales-managers}}}
delivery:
  max_per_day: 1
  max_per_week: 3
  when_capped: skip
  quiet_hours: "20:00-08:00"
  timezone_field: tz
  country_field: country
  timezone: Europe/Berlin
  transactional: [receipt]
"""

EXPECTED = [
    ('vp', 'fit', 18,
     'a lead whose role is vp counts 30 fit points for authority'),
    ('size-fifty', 'fit', 19,
     'a lead with company_size = 50 counts 1 fit point'),
    ('budget-band', 'fit', 20,
     'a lead with 1000 < budget ≤ 250000 counts 12.5 fit points for budget'),
    ('small', 'fit', 21,
     'a lead with 1 ≤ company_size < 10 and company_size ≠ 5 loses 5 fit points'),
    ('not-us', 'fit', 22,
     'a lead whose country is not US counts 2 fit points'),
    ('roles', 'fit', 23,
     'a lead whose role is director, 7 or true counts 3 fit points'),
    ('not-roles-1', 'fit', 24,
     'a lead whose role is not student counts 0 fit points'),
    ('not-roles-2', 'fit', 25,
     'a lead whose role is neither student nor intern counts 1 fit point'),
    ('not-roles-3', 'fit', 26,
     'a lead whose role is none of student, intern or bot counts 1 fit point'),
    ('free-mail', 'fit', 27,
     'a lead whose email_domain is on the list free_mail (gmail.com, yahoo.com) loses 10 fit '
     'points'),
    ('paid-mail', 'fit', 28,
     'a lead whose email_domain is not on the list big (a1, a2, a3, a4, a5, a6, a7, a8 and 2 more)'
     ' counts 4 fit points'),
    ('eu-zip', 'fit', 29,
     "a lead whose zip starts with '50' and email ends with '.edu' counts 1 fit point"),
    ('need', 'fit', 30,
     'a lead whose need is set and timeline is not set counts 15 fit points for need'),
    ('consent-text', 'fit', 31,
     'a lead whose consent is true and zip is \'50\' and country is "it\'s" counts 1 fit point'),
    ('scoring.fit_cap', 'fit', 14,
     'fit points add up to at most 80'),
    ('views', 'engagement', 33,
     "a page view or an e-mail click whose path starts with '/docs', from a lead whose role is vp,"
     ' adds 2 interest points, halving every 1.5 hours, at most 10'),
    ('careers', 'engagement', 35,
     "a page view whose path starts with '/careers' takes 10 interest points, never fading, at "
     'most 20 in all'),
    ('trial', 'engagement', 37,
     'a trial_started event adds 1 intent point, halving every 21 days'),
    ('big-order', 'engagement', 38,
     'a form submission with amount ≥ 500, from a lead with fit > 20, adds 25 intent points, '
     'halving every 14 days, at most 50'),
    ('scoring.decay', 'engagement', 16,
     'engagement points halve every 21 days unless their rule says otherwise'),
    ('scoring.engagement_cap', 'engagement', 15,
     'interest and intent points together count at most 90 for engagement'),
    ('junk', 'stages', 41,
     'a lead not in disqualified whose email_domain is on the list free_mail (gmail.com, '
     "yahoo.com) is disqualified because 'free mail' (priority 100)"),
    ('score-new', 'stages', 45,
     'a lead in captured becomes scored (priority 50)'),
    ('either', 'stages', 49,
     'a lead in nurturing and either (with total score ≥ 90) or (with BANT count ≥ 3 and more than'
     ' 2 events of any type in the last hour) becomes sales-ready and is handed to sales in queue '
     "'fast-lane' with an SLA of 4 hours (priority -5)"),
    ('negated', 'stages', 57,
     "a lead in scored or nurturing, not on nurture track 'awareness' and either (whose role is "
     "neither student nor intern) or (with interest ≥ 10) starts nurture track 'awareness', is "
     'sent welcome and is checked again after 3 days (priority 0)'),
    ('on-track', 'stages', 64,
     'a lead on a nurture track, with a hand-off open and in its state for less than 2 weeks stops'
     ' its nurture track and is handed to sales with an SLA of 24 hours (priority 0)'),
    ('off-track', 'stages', 67,
     'a lead on no nurture track, with no hand-off open, inactive for more than 12 hours and with '
     'exactly 1 page view in the last 7 days is marked quiet, has tier set to gold, has level set '
     "to 2, has vip set to false and has note set to null, with reason 'went quiet' (priority 0)"),
    ('events', 'stages', 71,
     'a lead with fewer than 3 e-mail opens in the last 30 days and on an event whose source is '
     'webinar and that is not a scheduled check or an SLA breach is sent nudge (priority 0)'),
    ('facts', 'stages', 74,
     'a lead not in converted or disqualified, not marked recycled, whose fact segment is '
     'enterprise, marked vip and with level ≤ 3 is handed to sales (priority 0)'),
    ('nothing-but-time', 'stages', 78,
     'a lead in its state for at least 1 day, inactive for at most 30 minutes and on any event but'
     " a scheduled check changes nothing, with reason 'just a note' (priority 0)"),
    ('nurture.requires_consent', 'nurture', 82,
     'e-mail the policy sends goes only to a lead whose consent is true'),
    ('nurture.awareness', 'nurture', 84,
     "nurture track 'awareness' sends welcome at once, then guide after 1 day and nudge after 2 "
     "weeks (each counted from the track's start)"),
    ('nurture.awareness.exhausted', 'nurture', 89,
     "when nurture track 'awareness' runs out, the lead becomes derailed and is sent guide"),
    ('nurture.single', 'nurture', 90,
     "nurture track 'single' sends guide after 90 seconds"),
    ('enterprise', 'routing', 93,
     "a lead with company_size ≥ 1000 is handed to queue 'enterprise'"),
    ('rest', 'routing', 96,
     "every other lead is handed to queue 'everyone'"),
    ('handoff', 'handoff', 98,
     "a hand-off goes to queue 'account-executives' when no routing rule picks another, with an "
     'SLA of 48 hours'),
    ('handoff.on_accept', 'handoff', 101,
     'when sales accept a hand-off, the lead becomes converted'),
    ('handoff.on_reject', 'handoff', 102,
     'when sales reject a hand-off, the lead becomes nurturing and starts nurture track '
     "'awareness'"),
    ('handoff.on_breach', 'breach', 103,
     'at the first SLA breach the hand-off goes to the next free rep of its queue, at the second '
     'it goes to the next free rep of its queue and at the third it is escalated to queue '
     "'sales-managers'"),
    ('delivery.caps', 'delivery', 105,
     'a lead gets at most 1 marketing e-mail a day (its own calendar day) and at most 3 in any 7 '
     'days; one over a cap is not sent at all'),
    ('delivery.quiet_hours', 'delivery', 108,
     "no marketing e-mail goes out between 20:00 and 08:00 on the lead's clock: it waits until "
     '08:00'),
    ('delivery.timezone', 'delivery', 109,
     "a lead's clock is the time zone in its tz field, else that of the country in its country "
     'field, else Europe/Berlin'),
    ('delivery.transactional', 'delivery', 112,
     'receipt is mail the person asked for: never held by these manners and never counted'),
    ('topics', 'topics', 12,
     'a person may keep or drop each topic of e-mail on the preference page: guides and news'),
]


def _every() -> tuple[Policy, str]:
    return load_policy_bytes(EVERY.encode(), "every.yaml").policy, EVERY


def test_a_policy_with_every_construct_in_words():
    policy, text = _every()
    said = [(r.id, r.group, r.line, r.sentence) for r in in_words(policy, text)]
    assert said == EXPECTED


def test_without_its_text_the_same_sentences_and_no_lines():
    policy, text = _every()
    with_lines = in_words(policy, text)
    assert in_words(policy) == [RuleInWords(r.id, r.group, r.sentence, None) for r in with_lines]
    assert in_words(policy, text) == with_lines  # deterministic
    # a text that is not this policy's gives a rule a line only where it holds that rule
    shipped = (ROOT / "policies" / "lead-lifecycle.v1.yaml").read_text()
    rules = [r for r in in_words(policy, shipped) if r.group in ("fit", "engagement", "stages", "routing")
             and not r.id.startswith("scoring.")]
    assert [r.id for r in rules if r.line is not None] == ["enterprise"]  # routing[0] in both
    assert [r.line for r in rules if r.line is not None] == [
        i + 1 for i, line in enumerate(shipped.splitlines()) if line.strip() == "- id: enterprise"]
    assert [r.line for r in in_words(policy, "a: [broken")] == [None] * len(with_lines)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_rule_of_a_shipped_policy_has_one_sentence(path: Path):
    text = path.read_text()
    policy = load_policy_bytes(text.encode(), path.name).policy
    said = in_words(policy, text)
    ids = [r.id for r in said]
    assert len(ids) == len(set(ids))
    assert all(r.group in GROUPS and r.sentence.strip() for r in said)
    assert [r.group for r in said] == sorted((r.group for r in said), key=GROUPS.index)
    groups = {r.id: r.group for r in said}
    lines = text.splitlines()
    kinds = [(policy.scoring.fit, "fit"), (policy.scoring.engagement, "engagement"),
             (policy.rules, "stages"), (policy.routing, "routing")]
    rules = [(rule.id, group) for found, group in kinds for rule in found]
    assert rules and all(groups[rule] == group for rule, group in rules)
    for r in said:
        if r.id in dict(rules):  # its line is where its id is written
            assert r.line is not None and re.search(rf"\bid: {re.escape(r.id)}\b", lines[r.line - 1]), r
    tracks = {f"nurture.{name}" for name in policy.nurture.tracks}
    assert tracks <= {r.id for r in said if r.group == "nurture"}
    assert len(said) == len(rules) + len([r for r in said if r.id not in dict(rules)])
    if policy.handoff is not None:
        assert {"handoff", "handoff.on_accept", "handoff.on_reject"} <= set(groups)


def test_the_shipped_policy_reads_as_its_owners_would_say_it():
    text = (ROOT / "policies" / "lead-lifecycle.v1.yaml").read_text()
    said = {r.id: r.sentence for r in in_words(load_policy_bytes(text.encode(), "v1").policy, text)}
    assert said["qualify"] == (
        "a lead in scored, nurturing or derailed with fit ≥ 50 and intent ≥ 25, not marked recycled "
        "and not marked unsubscribed becomes sales-ready and is handed to sales (priority 40)")
    assert said["pricing-page"] == ("a page view whose path starts with '/pricing' adds 15 intent points, "
                                    "halving every 14 days, at most 45")
    assert said["nurture.re-engage"] == (
        "nurture track 're-engage' sends we-miss-you at once, then last-call after 14 days")
    assert said["enterprise"] == "a lead whose segment is enterprise is handed to queue 'enterprise-accounts'"


def test_every_operator_and_effect_has_words():
    """Tripwires: an operator or an effect added to the policy language needs its words here."""
    field_test = policy_schema()["$defs"]["fieldTest"]["oneOf"][1]["properties"]
    assert set(field_test) == OPERATORS
    assert set(Effects.model_fields) == {"transition", "set", "track", "stop_track", "send", "handoff",
                                         "disqualify", "schedule", "reason"}


def _policy(**parts: Any) -> Policy:
    doc: dict[str, Any] = {"policy": "p", "version": 1, "owners": {"marketing": ["m"], "sales": ["s"]},
                           "states": ["captured", "derailed", "disqualified"], "rules": []}
    doc.update(parts)
    return Policy.model_validate(doc)


def _stage(when: dict[str, Any], then: dict[str, Any]) -> str:
    policy = _policy(rules=[{"id": "r", "when": when, "then": then}])
    return in_words(policy)[0].sentence


def test_what_the_model_takes_and_validation_refuses_is_still_said():
    assert _stage({"state": "captured"}, {"disqualify": "junk", "transition": "derailed"}) == (
        "a lead in captured is disqualified because 'junk' and does not become derailed "
        "(a disqualification wins) (priority 0)")
    assert _stage({"state": "captured"}, {"handoff": False}) == (
        "a lead in captured is handed to sales (handoff: false still hands off) (priority 0)")
    assert _stage({"state": "captured"}, {}) == "a lead in captured changes nothing (priority 0)"
    # no phrasing: the test as written, never left out
    assert _stage({"lead.role": {"matches": "v.*"}, "weird": 3, "count.page_view.7d": {"exists": True}},
                  {"transition": "derailed"}) == (
        "a lead where count.page_view.7d exists true, where lead.role matches 'v.*' and where weird eq 3 "
        "becomes derailed (priority 0)")
    assert _stage({"not": {"event.path": {"prefix": "/jobs"}}}, {"transition": "derailed"}) == (
        "a lead not (on an event whose path starts with '/jobs') becomes derailed (priority 0)")
    assert _stage({"lead.role": {"in_list": "nowhere"}}, {"reason": "x"}) == (
        "a lead whose role is on the list nowhere changes nothing, with reason 'x' (priority 0)")



def test_the_policy_wide_settings_in_words():
    policy = _policy(scoring={"fit_cap": 50}, routing=[{"id": "all", "queue": "q"}],
                     handoff={"queue": "h", "sla": "1w", "on_breach": {"reassign": "next"}},
                     delivery={"max_per_week": 2, "timezone_field": "tz", "country_field": None,
                               "transactional": ["a", "b"]})
    assert [(r.id, r.group, r.sentence) for r in in_words(policy)] == [
        ("scoring.fit_cap", "fit", "fit points add up to at most 50"),
        ("all", "routing", "every lead is handed to queue 'q'"),
        ("handoff", "handoff", "a hand-off goes to queue 'h' when no routing rule picks another, "
                               "with an SLA of 1 week"),
        ("handoff.on_breach", "breach",
         "at an SLA breach the hand-off goes to the next free rep of its queue"),
        ("delivery.caps", "delivery", "a lead gets at most 2 marketing e-mails in any 7 days; one over a cap "
                                      "waits for the next slot within the caps"),
        ("delivery.timezone", "delivery", "a lead's clock is the time zone in its tz field, else UTC"),
        ("delivery.transactional", "delivery", "a and b are mail the person asked for: never held by these "
                                               "manners and never counted"),
    ]
    uncapped = _policy(delivery={"when_capped": "skip"})
    assert [r.sentence for r in in_words(uncapped)] == [
        "no cap is set, so when_capped: skip holds back no e-mail",
        "a lead's clock is that of the country in its country field, else UTC"]

def test_a_send_of_variants_reads_as_its_split():
    assert send_in_words("welcome-guide") == "welcome-guide"
    assert send_in_words({"variants": ["welcome-a", "welcome-b"], "split": [50, 50]}) == (
        "welcome-a or welcome-b (split 50/50)")
    if not hasattr(rules.policy, "Variants"):
        pytest.skip("rules.policy has no A/B variants yet")
    policy = _policy(content=["a", "b", "c"], nurture={"tracks": {"welcome": {"steps": [
        {"after": "0d", "send": {"variants": ["a", "b"], "split": [50, 50]}},
        {"after": "3d", "send": {"variants": ["a", "b", "c"], "split": [40, 30, 30]}}]}}})
    assert [r.sentence for r in in_words(policy)] == [
        "nurture track 'welcome' sends a or b (split 50/50) at once, then a, b or c (split 40/30/30) "
        "after 3 days"]


# --- no threshold left out ---

NUMBERS = st.one_of(st.integers(-10**6, 10**9), st.floats(-1e6, 1e9, allow_nan=False, allow_infinity=False))
NUMERIC_FIELDS = st.sampled_from(["lead.budget", "lead.company_size", "score.fit", "score.intent",
                                  "score.total", "score.bant", "facts.level", "event.amount",
                                  "count.page_view.7d", "count.any.1h", "count.trial_started.30d"])
DURATIONS = st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 400), st.sampled_from("smhdw"))


@st.composite
def _field_test(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        field = draw(st.sampled_from(["inactive_for", "in_state_for"]))
        ops = draw(st.lists(st.sampled_from(["gt", "gte", "lt", "lte"]), min_size=1, max_size=2, unique=True))
        return {field: {op: draw(DURATIONS) for op in ops}}
    field = draw(NUMERIC_FIELDS)
    ops = draw(st.lists(st.sampled_from(["gt", "gte", "lt", "lte", "eq", "ne", "in", "not_in"]),
                        min_size=1, max_size=3, unique=True))
    return {field: {op: (draw(st.lists(NUMBERS, min_size=1, max_size=4)) if op in ("in", "not_in")
                         else draw(NUMBERS)) for op in ops}}


WHENS = st.recursive(
    _field_test(),
    lambda inner: st.one_of(
        st.builds(lambda items: {"all": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda items: {"any": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda w: {"not": w}, inner),
        st.builds(lambda a, b: {**a, **b}, inner, inner)),
    max_leaves=6)


def _thresholds(when: Any) -> list[str]:
    """Every number a condition compares with, as it is written (a whole float as a whole number;
    a duration's amount)."""
    if isinstance(when, dict):
        return [n for spec in when.values() for n in _thresholds(spec)]
    if isinstance(when, list):
        return [n for item in when for n in _thresholds(item)]
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        return [_written(when)]
    if isinstance(when, str) and (duration := re.fullmatch(r"(\d+)[smhdw]", when)):
        return [str(int(duration[1]))]
    return []


def _written(n: float) -> str:
    return str(int(n)) if isinstance(n, float) and n.is_integer() else repr(n)


def _holds(number: str, sentence: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(number)}(?![\w]|\.\d)", sentence) is not None


@settings(max_examples=150, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(when=WHENS, where=st.sampled_from(["fit", "engagement", "stages", "routing"]))
def test_every_threshold_of_a_condition_is_in_its_sentence(when: dict[str, Any], where: str):
    rule: dict[str, Any] = {"id": "r", "when": when}
    parts: dict[str, Any] = {
        "fit": {"scoring": {"fit": [{**rule, "points": 7}]}},
        "engagement": {"scoring": {"engagement": [
            {**rule, "on": "page_view", "points": 7, "signal": "intent"}]}},
        "stages": {"rules": [{**rule, "then": {"transition": "derailed"}}]},
        "routing": {"routing": [{**rule, "queue": "q"}]},
    }[where]
    said = [r for r in in_words(_policy(**parts)) if r.id == "r"]
    assert len(said) == 1
    for number in _thresholds(when):
        assert _holds(number, said[0].sentence), (number, said[0].sentence)
