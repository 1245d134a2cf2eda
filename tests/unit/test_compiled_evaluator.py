"""The compiled evaluator (rules.evaluate) decides exactly what the evaluator before it did
(tests/support/reference_evaluator.py): byte for byte the same Decision, lead included, for
every shipped policy, the 4,002-rule generated policy and generated histories of one lead:
profiles of every type a door takes, behaviour and system events, machine opens, soft and hard
bounces, sales answers, silences from a second to two months, and events whose `at` lies
before the evaluation or after it.

`make test` runs LEADFLOW_EVALUATOR_EXAMPLES histories per policy (default 60); `make fuzz`
runs more with the other fuzz tests."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activities.evaluation import BatchResult
from rules.compile import CompiledPolicy, compile_policy, load_compiled
from rules.evaluate import ChainLimitError, evaluate
from rules.models import Decision, Event, LeadRef, LeadState
from rules.validate import load_policy_bytes
from tests.support import ROOT
from tests.support import reference_evaluator as reference
from tests.support.policy import CHAIN, T0, policy_from

EXAMPLES = int(os.environ.get("LEADFLOW_EVALUATOR_EXAMPLES",
                              os.environ.get("LEADFLOW_FUZZ_EXAMPLES", "60")))
SAME = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize=not os.environ.get("LEADFLOW_FUZZ_RANDOM"),
                suppress_health_check=list(HealthCheck))
SHIPPED = sorted(p for p in (ROOT / "policies").glob("*.yaml") if p.name != "roster.yaml")


@cache
def generated() -> CompiledPolicy:
    sys.path.insert(0, str(ROOT / "bench"))
    import policy_gen
    import yaml

    raw = yaml.safe_dump(policy_gen.grow(4000), sort_keys=False).encode()
    return compile_policy(load_policy_bytes(raw, "generated-4002.yaml"))


# Values the policies' conditions test (mostly), and values of every other type a door takes.
ROLES = ["vp", "director", "manager", "student", "owner", "c-level", "lead", "VP", ""]
DOMAINS = ["acme.example", "mailinator.com", "rivalcrm.example", "big.example", "Acme.Example"]
anything = st.one_of(st.none(), st.booleans(), st.integers(-10**18, 10**18),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6))
numbers = st.one_of(st.sampled_from([0, 9, 10, 49, 50, 51, 999, 1000, 1001, 9999.5, 10000, 50000,
                                     10000.0, 49999.99, 2**53 + 1, -1, -0.0, 1e-05, 1e16]),
                    st.integers(0, 120_000), st.floats(0, 120_000), st.integers(-10, 10**7))
FIELDS = {
    "role": st.sampled_from(ROLES), "budget": numbers, "company_size": numbers,
    "timeline": st.sampled_from(["now", "this-quarter", "next-quarter", "next-year"]),
    "need": st.sampled_from(["crm", "", "pipeline"]), "country": st.sampled_from(["DE", "US", "c5", "FR"]),
    "region": st.sampled_from([f"r{i}" for i in range(0, 45, 4)]),
    "industry": st.sampled_from([f"i{i}" for i in range(0, 33, 3)]),
    "consent": st.booleans(), "first_name": st.text(max_size=5),
}


@st.composite
def profiles(draw: st.DrawFn) -> dict[str, Any]:
    """Most fields, most of them with a value the conditions test; some of any type."""
    out: dict[str, Any] = {}
    for name, usual in FIELDS.items():
        if draw(st.integers(0, 9)) < 6:
            out[name] = draw(usual) if draw(st.integers(0, 9)) < 8 else draw(anything)
    return out


DAY = 86400
# gaps between events: to the second of the policies' windows and thresholds, and in between
GAPS = [0.5, 1, 59, 1234.567, 3600, DAY, 3 * DAY, 7 * DAY, 7 * DAY + 1, 8 * DAY, 14 * DAY, 22 * DAY,
        30 * DAY, 30 * DAY - 1, 45 * DAY, 61 * DAY]
BEHAVIOUR = ["page_view", "page_view", "email_open", "email_click", "content_download", "webinar_attended",
             "demo_request", "check"]
PATHS = ["/pricing", "/pricing/team", "/blog/x", "/docs/p3", "/", "/assets/a2", "/webinars/w1"]


@st.composite
def histories(draw: st.DrawFn, policy: CompiledPolicy) -> list[tuple[Event, datetime]]:
    domain = draw(st.sampled_from(DOMAINS))
    email = f"ana@{domain}"
    kinds = sorted(policy.event_types - {"signup"})
    now = T0
    out = [(Event(id="e0", type="signup", at=now, lead=LeadRef(email=email, **draw(profiles())),
                  data={}), now)]
    for i in range(1, draw(st.integers(1, 24)) + 1):
        now += timedelta(seconds=draw(st.sampled_from(GAPS)))
        # behaviour mostly, so that scores climb past the levels rules watch
        kind = draw(st.sampled_from(kinds) if draw(st.integers(0, 3)) == 0 else st.sampled_from(BEHAVIOUR))
        data: dict[str, Any] = {}
        if kind == "page_view":
            data["path"] = draw(st.sampled_from(PATHS))
        if kind in ("email_open", "email_click") and draw(st.booleans()):
            data["machine"] = draw(st.sampled_from([True, False, "yes"]))
        if kind == "email_bounce":
            data["hard"] = draw(st.sampled_from([True, False]))
        if kind in ("sales_accept", "sales_reject"):
            data["reason"] = draw(st.sampled_from(["", "no budget", "good fit"]))
        if kind in ("check", "sla_breach"):
            data["reason"] = "scheduled"
        if draw(st.booleans()):
            data["campaign"] = draw(st.sampled_from(["c1", "c7", "spring"]))
        lead = draw(profiles()) if draw(st.integers(0, 5)) == 0 else {}
        # an event's own time: when it happened, a little before it was evaluated, or not said
        at = draw(st.sampled_from([now, now - timedelta(seconds=30), None]))
        event_id = draw(st.sampled_from([f"e{i}", None]))
        out.append((Event(id=event_id, type=kind, at=at, lead=LeadRef(email=email, **lead),
                          data=data), now))
    return out


def outcome(run: Any, policy: CompiledPolicy, lead: LeadState | None, event: Event, now: datetime
            ) -> tuple[str, Decision | None]:
    try:
        decision: Decision = run(policy, lead, event, now)
    except (ChainLimitError, reference.ChainLimitError) as err:
        return f"chain limit: {err}", None
    return decision.model_dump_json(), decision


def same_decisions(policy: CompiledPolicy, history: list[tuple[Event, datetime]]) -> int:
    """Run both evaluators over the history, each from its own last lead; the count of events.
    Each Decision also crosses to a workflow as it does live (slim, as JSON) and must come back
    the same, its lead rebuilt from the changes onto the lead the workflow held."""
    ours: LeadState | None = None
    theirs: LeadState | None = None
    for n, (event, now) in enumerate(history):
        mine, decided = outcome(evaluate, policy, ours, event, now)
        expected, before = outcome(reference.evaluate, policy, theirs, event, now)
        assert mine == expected, f"event {n} ({event.type}) of {policy.name}: decisions differ"
        if decided is None or before is None:
            return n
        wire = BatchResult(decisions=[decided], errors=[None]).slim(ours).model_dump_json()
        [back] = BatchResult.model_validate_json(wire).full(ours)
        assert back is not None and back.model_dump_json() == mine, f"event {n}: the slim result differs"
        ours, theirs = decided.lead, before.lead
    return len(history)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
@SAME
@given(data=st.data())
def test_every_shipped_policy_decides_as_before(path: Any, data: st.DataObject) -> None:
    policy = load_compiled(str(path))
    assert same_decisions(policy, data.draw(histories(policy))) >= 1


@SAME
@given(data=st.data())
def test_the_generated_4002_rule_policy_decides_as_before(data: st.DataObject) -> None:
    policy = generated()
    assert len(policy.rules) >= 4000
    assert same_decisions(policy, data.draw(histories(policy))) >= 1


def test_a_chain_past_its_limit_fails_as_before() -> None:
    policy = policy_from(CHAIN.replace("policy: mini", "policy: mini\nlimits: {max_chain: 2}"))
    history = [(Event(id=f"e{i}", type=kind, at=T0, lead=LeadRef(email="a@b.example"), data={}), T0)
               for i, kind in enumerate(["signup", "page_view", "page_view"])]
    assert same_decisions(policy, history) == 1  # the page view chained past two rules
