"""A/B tests of nurture content (issue 27, point 4): a send that names variants is refused at
its line when it is wrong, each lead gets one variant for good (a pure function of its id and
the step), `policy simulate` counts the sends per variant, and the figures of a test are the
database's own counts, with a verdict that needs the evidence to be there."""

from __future__ import annotations

import json
import re
import sqlite3
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from leadflow.db.database import Database
from leadflow.delivery.content import check_policy_content
from leadflow.delivery.links import delivery_digest
from leadflow.governance.registry import Registry
from leadflow.replay.generate import generate
from leadflow.replay.simulate import simulate_many, summary
from leadflow.reports.proportions import Rate, wilson
from leadflow.reports.variants import (
    NoAbTest,
    VariantFigures,
    began,
    figures,
    report,
    variant_figures,
    verdict,
)
from rules.evaluate import evaluate
from rules.identity import lead_key
from rules.models import LeadRef
from rules.simulate import run_events
from rules.validate import PolicyInvalid, load_policy_bytes
from rules.variants import AbStep, ab_steps, choose
from tests.support.policy import AB_WELCOME, MINIMAL, ROOT, T0, ab_policy_text, days, event, policy_from

A, B = AB_WELCOME

# -- refused at the line ----------------------------------------------------------------------

BROKEN = MINIMAL.replace("rules:\n", "content: [a, b, c]\nrules:\n") + """\
  - {id: start, priority: 9, when: {state: scored}, then: {track: t}}
  - {id: answer, when: {event.type: reply}, then: {send: {variants: [a, c], split: [70, 20]}}}  # @sum-rule
nurture:
  tracks:
    t:
      steps:
        - after: 0d
          send:
            variants: [a]  # @too-few
            split: [100]
        - after: 1d
          send:
            variants:
              - a
              - a  # @twice
              - zz  # @unknown
            split: [40, 30, 30]
        - after: 2d
          send:
            variants: [a, b]
            split: [50]  # @one-each
        - after: 3d
          send:
            variants: [a, b]
            split:
              - 100
              - 0  # @zero
        - {after: 4d, send: {variants: [b, c], split: [50, 49]}}  # @sum-step
"""


def _at(text: str, marker: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.endswith(f"# @{marker}"))


def test_a_wrong_a_b_send_is_refused_at_its_line():
    text = textwrap.dedent(BROKEN)
    with pytest.raises(PolicyInvalid) as refused:
        load_policy_bytes(text.encode(), "p.yaml")
    said = {str(p) for p in refused.value.problems}
    assert said == {
        f"p.yaml:{_at(text, 'too-few')}: track t: an A/B test needs at least 2 variants, not 1 "
        "(one content: `send: <id>`)",
        f"p.yaml:{_at(text, 'twice')}: track t: variant 'a' listed twice",
        f"p.yaml:{_at(text, 'unknown')}: track t: unknown content 'zz'",
        f"p.yaml:{_at(text, 'one-each')}: track t: 1 share(s) for 2 variants: one share per variant, "
        "in the same order",
        f"p.yaml:{_at(text, 'one-each')}: track t: the shares add up to 50, not 100",
        f"p.yaml:{_at(text, 'zero')}: track t: share 0: a share is a whole percentage above 0",
        f"p.yaml:{_at(text, 'sum-step')}: track t: the shares add up to 99, not 100",
        f"p.yaml:{_at(text, 'sum-rule')}: answer: the shares add up to 90, not 100",
    }, said
    # what the schema says: whole percentages, both keys, nothing else
    for send, message in [("{variants: [a, b], split: [50.5, 49.5]}", "split.0: 50.5 is not of type"),
                          ("{variants: [a, b]}", "'split' is a required property"),
                          ("{variants: [a, b], split: [50, 50], weights: [1, 1]}", "unknown key(s)"),
                          ("{variants: [a, ../b], split: [50, 50]}", "variants.1: '../b' does not match")]:
        bad = text.replace("{variants: [b, c], split: [50, 49]}", send)
        with pytest.raises(PolicyInvalid) as refused:
            load_policy_bytes(bad.encode(), "p.yaml")
        assert any(str(p).startswith(f"p.yaml:{_at(bad, 'sum-step')}: track t: ") and message in str(p)
                   for p in refused.value.problems), refused.value.problems


def test_every_variant_needs_its_template_and_keeps_the_topics(tmp_path: Path):
    (tmp_path / "policies").mkdir()
    content = tmp_path / "content"
    content.mkdir()
    for template in (ROOT / "content").glob("*.yaml"):
        if template.stem != B:
            (content / template.name).write_text(template.read_text())
    file = tmp_path / "policies" / "ab.yaml"
    file.write_text(ab_policy_text())
    loaded = load_policy_bytes(file.read_bytes(), str(file))
    line = _line_with(file, "variants: [welcome-guide, welcome-checklist]")
    (missing,) = check_policy_content(loaded, content)
    assert str(missing) == (f"{file}:{line}: track awareness: content {B!r} has no template: "
                            f"{content / f'{B}.yaml'} does not exist")
    shipped = (ROOT / "content" / f"{B}.yaml").read_text()
    (content / f"{B}.yaml").write_text(shipped.replace("topic: guides", "topic: gossip"))
    (topic,) = check_policy_content(loaded, content)
    assert "topic 'gossip' is not one of the topics of policy lead-lifecycle" in str(topic)
    (content / f"{B}.yaml").write_text(shipped)
    assert check_policy_content(loaded, content) == []


def _line_with(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# -- one variant per lead, for good -----------------------------------------------------------

LEADS = [lead_key(LeadRef(email=f"person{i}@company{i % 37}.example")) for i in range(400)]


@pytest.mark.parametrize("split", [(50, 50), (70, 30)])
def test_the_split_holds_within_five_points_over_400_leads(split: tuple[int, int]):
    got = Counter(choose(lead, "track:awareness|step:0", AB_WELCOME, split) for lead in LEADS)
    for variant, share in zip(AB_WELCOME, split, strict=True):
        assert abs(got[variant] / len(LEADS) - share / 100) <= 0.05, got


def test_a_new_split_moves_only_the_leads_it_must():
    before = {lead: choose(lead, "track:awareness|step:0", AB_WELCOME, (50, 50)) for lead in LEADS}
    after = {lead: choose(lead, "track:awareness|step:0", AB_WELCOME, (70, 30)) for lead in LEADS}
    assert all(after[lead] == A for lead in LEADS if before[lead] == A)
    moved = [lead for lead in LEADS if before[lead] != after[lead]]
    assert 0 < len(moved) <= 0.3 * len(LEADS)
    # another step is another draw: a lead's variant at one step says nothing of the next
    other = {lead: choose(lead, "track:awareness|step:1", AB_WELCOME, (50, 50)) for lead in LEADS}
    assert 0.35 < sum(other[lead] == before[lead] for lead in LEADS) / len(LEADS) < 0.65


def test_the_evaluator_sends_each_lead_its_variant_every_time():
    policy = policy_from(ab_policy_text())
    (ab,) = ab_steps(policy.policy)
    assert (ab.name, ab.track, ab.step, ab.shares()) == ("awareness[0]", "awareness", 0, {A: 50, B: 50})
    got: Counter[str] = Counter()
    for i in range(60):
        email = f"reader{i}@shop.example"
        signup = event("signup", T0, email, lead={"role": "manager"})
        first = evaluate(policy, None, signup, T0)
        (send,) = [a for a in first.actions if a.kind == "send"]
        lead = first.lead.key
        assert (send.content, send.ab_test) == (ab.choose(lead), "awareness[0]")
        assert send.key == f"{lead}|track:awareness@{signup.id}|step:0" and ab.sent_by(send.key, send.content)
        (line,) = [s for s in first.story if s.rule is None]
        assert line.why == f"A/B test awareness[0]: {send.content} (of {A} 50%, {B} 50%)"
        assert line.matched == {"ab_test": "awareness[0]", "variant": send.content, "split": {A: 50, B: 50}}
        # the same event again (a workflow task retried after a crash, a replay): the same Decision
        assert evaluate(policy, None, signup, T0).model_dump_json() == first.model_dump_json()
        # and a whole history run twice through the lifecycle sends the same, the A/B line in its story
        trail = run_events(policy, lead, [signup], T0 + days(4), trace=True)
        again = run_events(policy, lead, [signup], T0 + days(4), trace=True)
        assert trail.sent == again.sent == [send.content, "case-study"]
        assert trail.ab_sends == [("awareness[0]", send.content)]
        assert (T0.isoformat().replace("+00:00", "Z"), line.why) in trail.lines
        got[send.content] += 1
    assert set(got) == set(AB_WELCOME)


def test_a_rule_may_send_variants_too():
    text = ab_policy_text().replace(
        "  - id: start-nurture\n",
        "  - id: asked-for-more\n    priority: 90\n    when: {event.type: reply}\n"
        "    then: {send: {variants: [case-study, customer-story], split: [30, 70]}}\n"
        "  - id: start-nurture\n")
    policy = policy_from(text)
    (rule,) = [ab for ab in ab_steps(policy.policy) if ab.rule]
    assert (rule.name, rule.seed, rule.shares()) == ("asked-for-more", "rule:asked-for-more",
                                                     {"case-study": 30, "customer-story": 70})
    signup = event("signup", T0, "asker@shop.example", lead={"role": "manager"})
    lead = evaluate(policy, None, signup, T0).lead
    decided = evaluate(policy, lead, event("reply", T0 + days(1), "asker@shop.example"), T0 + days(1))
    (send,) = [a for a in decided.actions if a.kind == "send"]
    assert (send.content, send.ab_test) == (rule.choose(lead.key), "asked-for-more")
    assert rule.sent_by(send.key, send.content) and not rule.sent_by(send.key, "whats-new")
    (firing,) = [f for f in decided.fired if f.rule == "asked-for-more"]
    assert firing.effects == {"send": send.content, "ab_test": "asked-for-more"}


def test_simulate_counts_the_sends_of_each_variant_as_the_leads_get_them(tmp_path: Path):
    file = tmp_path / "ab.yaml"
    file.write_text(ab_policy_text("70, 30"))
    leads: dict[str, list[dict[str, object]]] = {}
    for raw in generate(120, 10, seed=5):
        leads.setdefault(str(raw["lead_id"]), []).append(raw)
    results = simulate_many(str(file), leads, None, processes=1)
    (ab,) = ab_steps(policy_from(file.read_text()).policy)
    sent = [(r["lead_id"], test, variant) for r in results for test, variant in r.get("ab_sends", ())]
    assert len(sent) > 100 and {test for _, test, _ in sent} == {"awareness[0]"}
    # each lead got the variant its id alone gives it
    assert all(variant == ab.choose(str(lead)) for lead, _, variant in sent)
    expected = Counter(variant for _, _, variant in sent)
    assert summary(results)["ab_sends"] == {"awareness[0]": dict(sorted(expected.items()))}
    assert expected[A] > expected[B] > 0  # 70/30, and both sides met


# -- the figures, against the database's own rows ----------------------------------------------

STEP = AbStep("awareness[0]", "track:awareness|step:0", AB_WELCOME, (50, 50), track="awareness", step=0)


def _key(lead: str, step: int = 0, track: str = "awareness", origin: str = "e1") -> str:
    return f"{lead}|track:{track}@{origin}|step:{step}"


def test_the_figures_are_the_database_s_counts(tmp_path: Path):
    path = tmp_path / "shared.sqlite"
    ledger = Database.open(f"sqlite:///{path}")
    email = [  # (key, lead, content, status, sent_at)
        (_key("l1"), "l1", A, "sent", 100.0),
        (_key("l2"), "l2", A, "sent", 100.0),
        (_key("l3"), "l3", A, "suppressed", None),  # given A, never sent: assigned, not in a rate
        (_key("l4"), "l4", B, "sent", 100.0),
        (_key("l5"), "l5", B, "sent", 100.0),
        (_key("l6"), "l6", B, "sent", 100.0),
        (_key("l6", origin="e9"), "l6", B, "sent", 500.0),  # the track begun again: one lead still
        (_key("l7", track="consideration"), "l7", A, "sent", 100.0),  # another track's step
        (_key("l8", step=1), "l8", A, "sent", 100.0),  # another step of the track
        ("l9|e1|some-rule|welcome-guide", "l9", A, "sent", 100.0),  # a rule's send of the same content
    ]
    fetches = [  # (lead, type, the delivery it names, machine)
        ("l1", "email_open", _key("l1"), None), ("l1", "email_click", _key("l1"), False),
        ("l2", "email_open", _key("l2"), True),  # a privacy proxy's prefetch
        ("l4", "email_open", _key("l4"), False), ("l4", "email_click", _key("l4"), True),  # a scanner
        ("l5", "email_open", _key("l5"), False), ("l5", "email_click", _key("l5"), False),
        ("l6", "email_open", _key("l6", origin="e9"), False),
        ("l7", "email_open", _key("l7", track="consideration"), False),
        ("l8", "email_click", _key("l8", step=1), False),
    ]
    moves = [("l1", 200.0), ("l2", 50.0), ("l4", 300.0), ("l7", 300.0), ("l8", 300.0)]  # l2: before it
    bodies = [(lead, f"f{i}", kind, json.dumps({"type": kind, "data": {
        "delivery": delivery_digest(key), **({} if machine is None else {"machine": machine})}}))
        for i, (lead, kind, key, machine) in enumerate(fetches)]
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO deliveries (key, kind, lead, subject, status, created_at, updated_at, "
                       "sent_at) VALUES (?, 'email', ?, ?, ?, 1, 1, ?)", email)
        db.executemany("INSERT INTO events (lead, id, type, at, taken_at, seq, body) "
                       "VALUES (?, ?, ?, 1, 1, 0, ?)", bodies)
        db.executemany("INSERT INTO transitions (lead, event_id, seq, at, from_state, to_state, policy, "
                       "version) VALUES (?, 'e', 0, ?, 'nurturing', 'sales-ready', 'p', 1)", moves)
    got = {f.variant: f for f in figures(ledger, STEP)}
    assert list(got) == [A, B]
    assert got[A] == VariantFigures(A, 50, assigned=3, sent=2, opened=Rate(1, 2), clicked=Rate(1, 2),
                                    sales_ready=Rate(1, 2))
    assert got[B] == VariantFigures(B, 50, assigned=3, sent=3, opened=Rate(3, 3), clicked=Rate(1, 3),
                                    sales_ready=Rate(1, 3))
    # the same counts straight from the tables
    with sqlite3.connect(path) as db:
        for variant in AB_WELCOME:
            sent = {lead for key, lead in db.execute(
                "SELECT key, lead FROM deliveries WHERE kind = 'email' AND status = 'sent' AND subject = ?",
                (variant,)) if re.fullmatch(r"l\d\|track:awareness@\w+\|step:0", key)}
            assert got[variant].sent == len(sent)
    # by the policy's name: its active version in the shared database says which step is a test
    with pytest.raises(NoAbTest):
        variant_figures(ledger, "lead-lifecycle", "awareness", 0)
    # the test began when a version with it was first activated: sends before were not its
    activated = Registry(ledger, clock=lambda: 0.5).first_start("lead-lifecycle",
                                                                [policy_from(ab_policy_text(), "ab.yaml")])
    assert activated is not None and began(ledger, "lead-lifecycle", STEP) == 0.5
    assert variant_figures(ledger, "lead-lifecycle", "awareness", 0) == list(got.values())
    assert [(f.assigned, f.sent) for f in figures(ledger, STEP, since=1.5)] == [(0, 0), (0, 0)]
    with pytest.raises(NoAbTest):
        variant_figures(ledger, "lead-lifecycle", "awareness", 1)  # a step with one content
    (test,) = report(ledger, "lead-lifecycle")["tests"]  # what `leadflow report ab-tests` prints
    assert test["variants"] == [f.as_dict() for f in got.values()]
    assert test["verdict"]["said"] == "no winner yet" and test["verdict"]["why"].startswith("too few leads")
    as_json = json.loads(json.dumps([f.as_dict() for f in got.values()]))
    assert as_json[1]["opened"] == {"count": 3, "of": 3, "rate": 1.0, "low": pytest.approx(0.4385, abs=1e-4),
                                    "high": 1.0}


# -- the verdict -------------------------------------------------------------------------------

def _figures(*ready_of_sent: tuple[int, int]) -> list[VariantFigures]:
    """Variants A, B, ... with (leads that moved to sales-ready, leads sent) each."""
    out = []
    for name, (ready, sent) in zip("ABC", ready_of_sent, strict=False):
        out.append(VariantFigures(name, 50, sent, sent, Rate(0, sent), Rate(0, sent), Rate(ready, sent)))
    return out


def test_wilson_intervals_match_the_published_values():
    # Newcombe (1998), table I: 0/10 -> 0 to 0.2775; 1/29 -> 0.0061 to 0.1718
    assert wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson(1, 29) == (pytest.approx(0.0061, abs=1e-4), pytest.approx(0.1718, abs=1e-4))
    assert Rate(0, 0).as_dict() == {"count": 0, "of": 0, "rate": None, "low": None, "high": None}


def test_the_verdict_names_a_winner_only_on_the_evidence():
    clear = verdict(_figures((20, 200), (45, 200)))
    assert (clear.said, clear.winner) == ("B better with 95% confidence", "B")
    assert clear.p_value is not None and clear.p_value < 0.01  # z = 3.3
    close = verdict(_figures((20, 200), (27, 200)))
    assert (close.said, close.winner) == ("no winner yet", None) and close.p_value is not None
    assert close.p_value > 0.05 and "B 27/200 = 13.5% against A 20/200 = 10.0%" in close.why
    few = verdict(_figures((0, 3), (3, 3)))  # 100% against 0%, on three leads each
    assert few.said == "no winner yet" and few.why.startswith("too few leads")
    # three variants: the leader must beat both, each at 0.05 / 2
    assert verdict(_figures((20, 200), (45, 200), (38, 200))).said == "no winner yet"
    assert verdict(_figures((20, 200), (55, 200), (25, 200))).said == "B better with 95% confidence"
    clicks = verdict(_figures((1, 100), (1, 100)), metric="clicked")
    assert (clicks.metric, clicks.said) == ("clicked", "no winner yet")


def test_a_policy_test_takes_either_variant_of_an_ab_test_for_the_other() -> None:
    """sam's lead gets welcome-checklist; the example says welcome-guide, and holds: the variants
    stand for one another in `sent:` and `not_sent:`, nowhere else."""
    from rules.compile import compile_policy
    from rules.policy import PolicyTest
    from rules.policytest import run_case
    from rules.validate import load_policy_bytes
    from rules.variants import ab_steps
    from tests.support.policy import ab_policy_text

    policy = compile_policy(load_policy_bytes(ab_policy_text().encode(), "ab.yaml"))
    sam = {"email": "sam@smallshop.example", "role": "manager", "company_size": 8}

    def case(**expect: object) -> list[str]:
        return run_case(policy, PolicyTest(name="t", lead=sam, events=[{"type": "signup"}],
                                           expect=dict(expect))).failures

    (ab,) = ab_steps(policy.policy)
    assert ab.choose(lead_key(LeadRef(email=sam["email"]))) == "welcome-checklist"
    assert case(sent=["welcome-guide"]) == [] and case(sent=["welcome-checklist"]) == []
    assert case(not_sent=["welcome-guide"]) != []  # the welcome went out, as one variant or the other
    assert case(sent=["case-study"]) != []  # a content outside the test is still itself
