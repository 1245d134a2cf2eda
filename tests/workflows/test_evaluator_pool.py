"""Evaluator processes: a deadline on every engine call, and a crash costs one event. The faults
are real (tests/support/evaluator_faults.py hangs durable-rules and segfaults the process)."""

from __future__ import annotations

import asyncio

import pytest

from activities.evaluation import Catalog, EvaluateBatch
from activities.evaluator_pool import EvaluatorPool
from rules.evaluate import evaluate
from tests.support.policy import MINIMAL, T0, days, event, policy_from

FAULTS = "tests.support.evaluator_faults:evaluate_event"


def _run(pool: EvaluatorPool, catalog: Catalog, batch: EvaluateBatch):
    async def go():
        try:
            return await pool.evaluate(catalog, batch)
        finally:
            pool.close()
    return asyncio.run(go())


def _lead_and_catalog():
    policy = policy_from(MINIMAL)
    lead = evaluate(policy, None, event("signup"), T0).lead
    return policy, lead, Catalog(policy)


def test_a_hanging_engine_call_costs_its_event_a_clear_error_and_the_batch_goes_on():
    policy, lead, catalog = _lead_and_catalog()
    pool = EvaluatorPool(1, deadline=2, target=FAULTS)
    batch = EvaluateBatch(lead=lead, now=T0 + days(1), version=1, events=[
        event("page_view", T0 + days(1)),
        event("reply", T0 + days(1), fault="hang"),
        event("demo_request", T0 + days(1))])
    result = _run(pool, catalog, batch)
    first, hung, last = result.decisions
    assert first is not None and first.state == "nurturing"
    assert hung is None and "did not finish reply event" in result.errors[1]
    assert "within 2 s" in result.errors[1]
    # the third event met the lead as the first left it, in a new evaluator
    assert last is not None and last.state_before == "nurturing" and last.state == "sales-ready"
    assert pool.restarts == 1


def test_a_crash_in_the_engine_costs_one_event_not_the_worker():
    policy, lead, catalog = _lead_and_catalog()
    pool = EvaluatorPool(1, deadline=30, target=FAULTS)
    batch = EvaluateBatch(lead=lead, now=T0 + days(1), version=1, events=[
        event("reply", T0 + days(1), fault="crash"), event("page_view", T0 + days(1))])
    result = _run(pool, catalog, batch)
    assert result.decisions[0] is None and "crashed on reply event" in result.errors[0]
    assert result.decisions[1] is not None and result.decisions[1].state == "nurturing"
    assert pool.restarts == 1


def test_evaluators_give_the_decisions_the_worker_would():
    policy, lead, catalog = _lead_and_catalog()
    pool = EvaluatorPool(2, deadline=30)
    events = [event("page_view", T0 + days(1)), event("fax", T0 + days(1)),
              event("demo_request", T0 + days(2))]
    result = _run(pool, catalog, EvaluateBatch(lead=lead, now=T0 + days(2), version=1, events=events))
    here = []
    for ev in events:
        here.append(evaluate(policy, lead, ev, T0 + days(2)))
        lead = here[-1].lead
    assert [d.model_dump() for d in result.decisions] == [d.model_dump() for d in here]
    assert result.decisions[1].rejected and pool.restarts == 0


def test_a_worker_keeps_serving_a_lead_whose_event_hung_the_engine(tmp_path):
    from tests.support.temporal_harness import harness

    async def scenario():
        pool = EvaluatorPool(1, deadline=2, target=FAULTS)
        try:
            async with harness(tmp_path, pool=pool) as h:
                lead = await h.signup("hang@acme.example", role="vp", budget=60000, timeline="now")
                hung = await lead.execute_update("submit", {"id": "h1", "type": "reply",
                                                            "data": {"fault": "hang"}})
                assert "did not finish reply event h1 within 2 s" in hung["rejected"]
                answer = await lead.execute_update("submit", {"id": "d1", "type": "demo_request"})
                assert answer["state"] == "sales-ready"
                story = (await h.state(lead))["story"]
                assert any(s["event_id"] == "h1" and "did not finish" in s["why"] for s in story)
        finally:
            pool.close()
    asyncio.run(scenario())


def test_a_batch_given_up_midway_never_hands_its_answer_to_the_next_one():
    policy, lead, catalog = _lead_and_catalog()
    pool = EvaluatorPool(1, deadline=30, target=FAULTS)

    async def go():
        stuck = EvaluateBatch(lead=lead, now=T0, version=1, events=[event("reply", T0, fault="hang")])
        with pytest.raises((TimeoutError, asyncio.TimeoutError)):  # the activity is cancelled
            await asyncio.wait_for(pool.evaluate(catalog, stuck), 1)
        fine = EvaluateBatch(lead=lead, now=T0, version=1, events=[event("page_view", T0)])
        try:
            return await pool.evaluate(catalog, fine)
        finally:
            pool.close()

    result = asyncio.run(go())
    assert result.errors == [None] and result.decisions[0].state == "nurturing"
    assert pool.restarts == 1


def test_the_worker_evaluates_what_its_policy_remembers_and_asks_a_child_the_rest():
    """A child's engine answers go back with its Decisions; with them the worker evaluates such
    a batch itself, to the same Decisions, and never asks its own engine (nothing of the policy
    is registered with it); a fact never met goes to a child again."""
    from activities.evaluator_pool import evaluate_remembered
    from rules import engine
    from rules.validate import load_policy_bytes
    from tests.support import ROOT

    raw = (ROOT / "policies" / "lead-lifecycle.v1.yaml").read_bytes()
    policy = load_policy_bytes(raw + b"\n# a copy of its own\n", "remembered.yaml").compiled
    catalog = Catalog(policy)
    hot = {"role": "vp", "budget": 60000, "timeline": "now"}
    signup = event("signup", T0, lead=hot)
    batch = EvaluateBatch(lead=None, now=T0, version=None, events=[signup, event("page_view", T0)])
    assert evaluate_remembered(catalog, batch) is None  # nothing remembered yet

    async def go():
        pool = EvaluatorPool(1, deadline=30)
        try:
            return await pool.evaluate(catalog, batch)
        finally:
            pool.close()
    asked = asyncio.run(go())
    here = evaluate_remembered(catalog, batch)
    assert here is not None
    assert [d.model_dump_json() for d in here.decisions] == [d.model_dump_json() for d in asked.decisions]
    assert not any(name.startswith(policy.ruleset) for name in engine._rulesets)
    other = EvaluateBatch(lead=None, now=T0, version=None,
                          events=[event("signup", T0, email="bo@acme.example", lead={"role": "student"})])
    assert evaluate_remembered(catalog, other) is None  # a student's facts: never asked yet
