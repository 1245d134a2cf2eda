"""The pure core: forward chaining, priorities, bounds, decay, isolation and memory."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import engine
from rules.evaluate import ChainLimitError, evaluate
from rules.identity import with_id
from rules.lifecycle import scheduled_check
from rules.models import Event
from rules.scoring import decayed
from tests.support.policy import CHAIN, MINIMAL, T0, days, event, policy_from


def test_forward_chaining_runs_to_quiescence_in_one_evaluation():
    policy = policy_from(CHAIN)
    first = evaluate(policy, None, event("signup"), T0)
    assert first.state == "scored"
    d = evaluate(policy, first.lead, event("page_view", T0 + days(1)), T0 + days(1))
    stage = [f.rule for f in d.fired if f.kind == "stage"]
    # to-nurturing's effect enables r1, whose fact enables r2, whose fact enables r3.
    assert stage == ["to-nurturing", "r1", "r2", "r3"]
    assert d.state == "sales-ready"
    assert d.fact_changes == {"a": 1, "b": 2}
    r2 = next(f for f in d.fired if f.rule == "r2")
    assert r2.matched == {"facts.a": 1, "facts.b": None}
    story = first.story + d.story
    assert [(e.from_state, e.to_state, e.rule) for e in story] == [
        ("captured", "scored", "to-scored"), ("scored", "nurturing", "to-nurturing"),
        ("nurturing", "sales-ready", "r3")]
    assert all(e.policy == "mini" and e.version == 1 for e in story)


def test_priority_decides_which_matching_rule_acts_first():
    text = MINIMAL + """\
  - {id: low, priority: 1, when: {state: scored, event.type: reply}, then: {transition: derailed}}
  - {id: high, priority: 9, when: {state: scored, event.type: reply}, then: {transition: sales-ready}}
"""
    policy = policy_from(text)
    lead = evaluate(policy, None, event("signup"), T0).lead
    d = evaluate(policy, lead, event("reply", T0), T0)
    assert d.state == "sales-ready"
    stage = [f.rule for f in d.fired if f.kind == "stage"]
    assert stage == ["high"]  # low no longer matches once high moved the lead


def test_equal_priority_keeps_file_order_and_no_change_rules_all_fire():
    text = MINIMAL + """\
  - {id: first, when: {state: scored, event.type: reply}, then: {send: note}}
  - {id: second, when: {state: scored, event.type: reply}, then: {send: note}}
content: [note]
"""
    policy = policy_from(text)
    lead = evaluate(policy, None, event("signup"), T0).lead
    d = evaluate(policy, lead, event("reply", T0), T0)
    assert [f.rule for f in d.fired if f.kind == "stage"] == ["first", "second"]
    assert [a.content for a in d.actions if a.kind == "send"] == ["note", "note"]
    assert len({a.key for a in d.actions}) == 2


def test_chain_bound_stops_a_long_chain_with_a_clear_error():
    text = CHAIN + "limits: {max_chain: 3}\n"
    policy = policy_from(text)
    lead = evaluate(policy, None, event("signup"), T0).lead
    with pytest.raises(ChainLimitError, match=r"more than 3 rules chained on one page_view event "
                       r"\(to-nurturing -> r1 -> r2 -> r3\)"):
        evaluate(policy, lead, event("page_view", T0), T0)
    assert _held(policy) == [] and engine.abandoned_sessions() == 0


def test_a_rule_fires_at_most_once_per_evaluation_so_flip_flops_end():
    text = MINIMAL + """\
  - {id: flip, when: {state: scored, event.type: reply}, then: {set: {x: 1}}}
  - {id: flop, when: {state: scored, facts.x: 1}, then: {set: {x: 2}}}
  - {id: flip-again, when: {state: scored, facts.x: 2}, then: {set: {x: 1}}}
"""
    policy = policy_from(text)
    lead = evaluate(policy, None, event("signup"), T0).lead
    d = evaluate(policy, lead, event("reply", T0), T0)
    assert [f.rule for f in d.fired if f.kind == "stage"] == ["flip", "flop", "flip-again"]
    assert d.lead.facts["x"] == 1


DECAY = MINIMAL + """\
scoring:
  engagement_cap: 1000
  engagement:
    - {id: pricing, on: page_view, when: {event.path: {prefix: /pricing}}, points: 20, signal: intent,
       decay: {half_life: 10d}}
    - {id: blog, on: page_view, when: {event.path: {prefix: /blog}}, points: 4, signal: interest,
       cap: 10, decay: none}
"""


def test_decay_arithmetic_uses_event_time_and_now():
    policy = policy_from(DECAY)
    lead = evaluate(policy, None, event("signup"), T0).lead
    lead = evaluate(policy, lead, event("page_view", T0, path="/pricing/x"), T0).lead
    d = evaluate(policy, lead, event("check", T0 + days(10)), T0 + days(10))
    assert d.scores.intent == 10.0  # one half-life
    d = evaluate(policy, lead, event("check", T0 + days(25)), T0 + days(25))
    assert d.scores.intent == round(20 * 0.5 ** 2.5, 2)
    # an event that arrives late scores from when it happened, not when it arrived
    late = evaluate(policy, lead, event("page_view", T0, path="/pricing"), T0 + days(20)).lead
    d = evaluate(policy, late, event("check", T0 + days(20)), T0 + days(20))
    assert d.scores.intent == 10.0
    assert decayed(8, 86400 * 3, 86400 * 3) == 4


def test_caps_and_no_decay():
    policy = policy_from(DECAY)
    lead = evaluate(policy, None, event("signup"), T0).lead
    for i in range(5):
        lead = evaluate(policy, lead, event("page_view", T0 + days(i), path="/blog"), T0 + days(i)).lead
    d = evaluate(policy, lead, event("check", T0 + days(400)), T0 + days(400))
    assert d.scores.interest == 10  # 5 x 4 points, capped at 10, never decays


def test_inactivity_is_judged_when_the_scheduled_check_arrives():
    policy = policy_from(MINIMAL)
    d = evaluate(policy, None, event("signup"), T0)
    d = evaluate(policy, d.lead, event("page_view", T0 + days(1)), T0 + days(1))
    assert d.state == "nurturing"
    assert d.next_check_at == T0 + days(31)  # last activity + 30d, asked for by to-derailed
    early = evaluate(policy, d.lead, event("check", T0 + days(20)), T0 + days(20))
    assert early.state == "nurturing"
    due = evaluate(policy, d.lead, event("check", d.next_check_at), d.next_check_at)
    assert due.state == "derailed"
    assert due.story[-1].matched == {"state": "nurturing", "inactive_for": 30 * 86400}


def test_evaluating_again_later_names_the_same_delivery_keys(default_policy):
    """A workflow task retried after a worker crash evaluates the same event (or the same
    scheduled check) again, at a later moment; its sends may already be in the delivery
    ledger. The keys must not move with that moment, or the ledger would send twice."""
    def sends(d):
        return [(a.key, a.content) for a in d.actions if a.kind == "send"]

    signup = event("signup", lead={"role": "manager"})
    first, again = (evaluate(default_policy, None, signup, T0 + s)
                    for s in (timedelta(0), timedelta(seconds=3)))
    assert sends(first) and sends(first) == sends(again)  # the awareness track's first step
    due = first.next_check_at
    assert due is not None
    check = Event.model_validate(scheduled_check(due))
    step, step_again = (evaluate(default_policy, first.lead, with_id(check), due + s)
                        for s in (timedelta(0), timedelta(seconds=2)))
    assert [c for _, c in sends(step)] == ["case-study"]
    assert sends(step) == sends(step_again)


def test_unknown_event_is_rejected_and_recorded_without_changing_the_lead():
    policy = policy_from(MINIMAL)
    lead = evaluate(policy, None, event("signup"), T0).lead
    d = evaluate(policy, lead, event("fax_received", T0), T0)
    assert d.rejected and "unknown event type 'fax_received'" in d.rejected
    assert d.lead.state == lead.state and d.lead.facts == lead.facts
    assert d.story[-1].why.startswith("rejected:")


def test_two_versions_live_side_by_side_in_one_process():
    v1 = policy_from(MINIMAL)
    v2 = policy_from(MINIMAL.replace("version: 1", "version: 2").replace(
        "{state: scored, event.type: page_view}", "{state: scored, event.type: reply}"))
    assert v1.ruleset.startswith("mini@v1#") and v2.ruleset.startswith("mini@v2#")
    assert v1.ruleset != v2.ruleset
    lead = evaluate(v1, None, event("signup"), T0).lead
    assert evaluate(v1, lead, event("page_view", T0), T0).state == "nurturing"
    assert evaluate(v2, lead, event("page_view", T0), T0).state == "scored"
    assert evaluate(v2, lead, event("reply", T0), T0).version == 2


def test_every_rule_compiles_to_a_single_tagged_pattern(default_policy):
    assert set(default_policy.definitions) == {"fit", "engagement", "stage"}
    for phase, definition in default_policy.definitions.items():
        for name, rule in definition.items():
            (pattern,) = rule["all"]
            assert set(pattern) == {"m"}, name
            assert pattern["m"]["$and"][0] == {"k": phase}, name
    assert sum(len(d) for d in default_policy.definitions.values()) == len(default_policy.rules)


def test_same_inputs_same_decision(default_policy):
    ev = event("signup", lead={"role": "vp", "budget": 60000})
    a = evaluate(default_policy, None, ev, T0)
    b = evaluate(default_policy, None, ev, T0)
    assert a.model_dump() == b.model_dump()


def _lead_profile(i: int) -> dict:
    hot = i % 2 == 0
    return {"role": "vp" if hot else "student", "budget": 60000 if hot else 0, "timeline": "now"}


def test_interleaved_leads_never_see_each_others_facts(default_policy):
    leads: dict[int, object] = {}
    for step, kind in enumerate(["signup", "page_view", "demo_request"]):
        for i in range(6):
            ev = event(kind, T0 + days(step), email=f"p{i}@acme.example", path="/pricing",
                       lead=_lead_profile(i) if kind == "signup" else {})
            leads[i] = evaluate(default_policy, leads.get(i), ev, T0 + days(step)).lead
    for i, lead in leads.items():
        assert lead.state == ("sales-ready" if i % 2 == 0 else "disqualified"), i
        assert lead.profile["email"] == f"p{i}@acme.example"
        assert ("disqualified_reason" in lead.facts) == (i % 2 == 1)


def test_threads_evaluating_at_once_stay_isolated(default_policy):
    errors: list[str] = []

    def worker(n: int) -> None:
        for j in range(40):
            i = n * 100 + j
            ev = event("signup", T0, email=f"t{i}@acme.example", lead=_lead_profile(i))
            d = evaluate(default_policy, None, ev, T0)
            want = "nurturing" if i % 2 == 0 else "disqualified"
            if d.state != want or d.lead.profile["role"] != _lead_profile(i)["role"]:
                errors.append(f"{i}: {d.state}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _held(default_policy) == [] and engine.abandoned_sessions() == 0


def _held(policy) -> list:
    return [f for phase in policy.definitions for f in engine.held_facts(f"{policy.ruleset}/{phase}")]


def test_no_fact_outlives_its_evaluation(default_policy):
    hot = {"role": "vp", "budget": 60000, "timeline": "now", "company_size": 300}
    lead = None
    for i in range(300):
        now = T0 + days(i / 10)
        kind = ["signup", "page_view", "demo_request", "email_open"][i % 4]
        ev = event(kind, now, email=f"m{i // 4}@acme.example", path="/pricing",
                   lead=hot if kind == "signup" else {})
        lead = evaluate(default_policy, None if kind == "signup" else lead, ev, now).lead
        assert _held(default_policy) == [], i
    assert lead.state == "sales-ready" and engine.abandoned_sessions() == 0


def test_decision_serialises_to_json(default_policy):
    d = evaluate(default_policy, None, event("signup", lead={"role": "vp"}), T0)
    back = json.loads(d.model_dump_json())
    assert back["state"] == "nurturing" and back["ruleset"] == default_policy.ruleset


def test_sales_answers_only_count_while_a_handoff_is_open(default_policy):
    profile = {"role": "vp", "budget": 60000, "timeline": "now"}
    lead = evaluate(default_policy, None, event("signup", lead=profile), T0).lead
    stray = evaluate(default_policy, lead, event("sales_accept", T0), T0)
    assert stray.state == "nurturing" and stray.fired[-1].kind != "handoff"
    ready = evaluate(default_policy, lead, event("demo_request", T0 + days(1)), T0 + days(1))
    assert ready.state == "sales-ready" and ready.lead.handoff_open
    (handoff,) = [a for a in ready.actions if a.kind == "create_handoff"]
    assert handoff.queue == "account-executives" and handoff.sla_seconds == 48 * 3600
    again = evaluate(default_policy, ready.lead, event("contact_sales", T0 + days(1)), T0 + days(1))
    assert not [a for a in again.actions if a.kind == "create_handoff"]  # never two open
    accepted = evaluate(default_policy, ready.lead, event("sales_accept", T0 + days(2)), T0 + days(2))
    assert accepted.state == "converted" and not accepted.lead.handoff_open


def test_compaction_keeps_scores_exact_and_the_record_count_flat():
    from rules.models import Contribution
    from rules.scoring import compact, engagement

    day = 86400.0
    many = [Contribution(rule="r", at=i * day, points=5, half_life=7 * day, signal="interest")
            for i in range(300)]
    now = 300 * day
    merged = compact(many, now)
    assert len(merged) == 1
    for later in (now, now + 3 * day, now + 40 * day):
        assert engagement(merged, later, {}) == pytest.approx(engagement(many, later, {}), rel=1e-9)


def test_a_lead_with_thousands_of_events_keeps_a_small_state(default_policy):
    lead = evaluate(default_policy, None, event("signup", lead={"role": "manager"}), T0).lead
    kinds = ["email_open", "page_view", "email_click", "content_download"]
    for i in range(3000):
        now = T0 + days(i / 20)
        lead = evaluate(default_policy, lead, event(kinds[i % 4], now, path="/blog/x"), now).lead
    assert len(lead.contributions) <= len(default_policy.policy.scoring.engagement)
    assert len(lead.history) <= 500


def test_a_decision_built_on_the_fast_path_is_the_one_pydantic_would_build():
    from rules.models import Decision, Scores

    policy = policy_from(CHAIN)
    first = evaluate(policy, None, event("signup"), T0)
    d = evaluate(policy, first.lead, event("page_view", T0 + days(1)), T0 + days(1))
    slow = Decision.model_construct(**{**d.__dict__, "scores": Scores.model_construct(**d.scores.__dict__)})
    assert d == slow and d.scores == slow.scores
    assert d.model_fields_set == slow.model_fields_set
    assert d.model_dump_json() == slow.model_dump_json()
    # what the activity's result becomes on the way through Temporal, and back
    back = Decision.model_validate_json(d.model_dump_json())
    assert back == Decision.model_validate_json(slow.model_dump_json())


NEGATIVE = MINIMAL + """\
scoring:
  engagement:
    - {id: blog, on: page_view, when: {event.path: {prefix: /blog}}, points: 4, signal: interest,
       decay: {half_life: 30d}}
    - {id: careers, on: page_view, when: {event.path: {prefix: /careers}}, points: -5, signal: interest,
       cap: 6, decay: {half_life: 1d}}
"""


def test_an_engagement_rule_subtracts_within_its_cap_gives_back_as_it_decays_and_no_signal_goes_below_0():
    policy = policy_from(NEGATIVE)
    lead = evaluate(policy, None, event("signup"), T0).lead
    for path in ("/blog/a", "/blog/b"):
        lead = evaluate(policy, lead, event("page_view", T0, path=path), T0).lead
    d = evaluate(policy, lead, event("page_view", T0, path="/careers"), T0)
    assert d.scores.interest == 3.0  # 8 - 5
    # two more careers pages take at most the cap, 6 in all, and interest never reads below 0
    for _ in range(2):
        d = evaluate(policy, d.lead, event("page_view", T0, path="/careers/x"), T0)
    assert d.scores.interest == 2.0
    alone = evaluate(policy, evaluate(policy, None, event("signup", email="bo@acme.example"), T0).lead,
                     event("page_view", T0, email="bo@acme.example", path="/careers"), T0)
    assert alone.scores.interest == 0.0
    # a day on, the 15 careers took have halved (1d), still past the cap of 6; two days on,
    # they are 3.75, and the blog's 8 points have barely faded (30d)
    later = evaluate(policy, d.lead, event("check", T0 + days(1)), T0 + days(1))
    assert later.scores.interest == round(8 * 0.5 ** (1 / 30) - 6, 2)
    later = evaluate(policy, later.lead, event("check", T0 + days(2)), T0 + days(2))
    assert later.scores.interest == round(8 * 0.5 ** (2 / 30) - 15 * 0.25, 2)


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]),
                          st.floats(-20, 20).filter(lambda p: abs(p) > 0.01),
                          st.sampled_from([0.0, 3600.0, 86400.0, 7 * 86400.0]), st.floats(0, 5 * 86400)),
                min_size=1, max_size=8),
       st.sampled_from(["interest", "engagement"]), st.floats(0.1, 40))
def test_a_check_for_a_score_decaying_below_a_level_is_never_late_with_rules_that_subtract(
        parts, field, threshold):
    from rules.models import Contribution
    from rules.scoring import Levels, compact

    now = 10 * 86400.0
    caps = {"a": 15.0, "b": None, "c": 6.0, "d": None}
    signals = {"a": "interest", "b": "interest", "c": "intent", "d": "interest"}
    # a rule's points have one sign and one half-life, as a policy version gives them
    sign = {rule: 1.0 if points > 0 else -1.0 for rule, points, _, _ in reversed(parts)}
    half = {rule: h for rule, _, h, _ in reversed(parts)}
    contributions = compact([Contribution(rule, now - age, sign[rule] * abs(points), half[rule],
                                          signals[rule]) for rule, points, _, age in parts], now)
    levels = Levels(contributions, caps, now)
    when = levels.crossing_below(field, threshold)
    current = levels.interest + (levels.intent if field == "engagement" else 0.0)
    if current < threshold:
        assert when is None
        return
    if when is not None and when <= now + 3600:
        return  # checks come at least an hour apart: a crossing sooner is seen within the hour
    end = when if when is not None else now + 60 * 86400
    for step in range(1, 201):
        t = now + (end - now) * step / 200 - 1e-3
        later = Levels(contributions, caps, t)
        score = later.interest + (later.intent if field == "engagement" else 0.0)
        assert score >= threshold - 1e-9, (t - now, score, when)
