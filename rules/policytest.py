"""`leadflow policy test`: a policy's embedded examples, run through the real evaluator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rules.compile import CompiledPolicy
from rules.conditions import holds
from rules.policy import PolicyTest
from rules.simulate import DEFAULT_START, LeadResult, offset, run_events, test_events
from rules.variants import ab_steps


@dataclass
class CaseResult:
    name: str
    failures: list[str] = field(default_factory=list)
    trail: LeadResult | None = None

    @property
    def ok(self) -> bool:
        return not self.failures


def run_case(policy: CompiledPolicy, case: PolicyTest) -> CaseResult:
    result = CaseResult(case.name)
    try:
        events = test_events(case.events, case.lead)
        until = DEFAULT_START + offset(case.until) if case.until else None
        trail = run_events(policy, "test", events, until, record=True)
    except Exception as err:  # a policy error is this case's failure, not the runner's crash
        result.failures.append(f"error: {err}")
        return result
    result.trail = trail
    lead = trail.lead
    assert lead is not None
    last = trail.decisions[-1]
    fired = [f.rule for d in trail.decisions for f in d.fired]
    sent = trail.sent  # what went out by the end: a send the manners held past it or skipped did not
    actions = {a.kind for d in trail.decisions for a in d.actions}
    expect = case.expect
    fail = result.failures.append

    if "state" in expect and lead.state != expect["state"]:
        fail(f"state: expected {expect['state']!r}, got {lead.state!r} (path {' -> '.join(trail.path)})")
    for name, value in expect.get("facts", {}).items():
        if lead.facts.get(name) != value:
            fail(f"facts.{name}: expected {value!r}, got {lead.facts.get(name)!r}")
    scores = last.scores.model_dump()
    for name, test in expect.get("score", {}).items():
        ops = test if isinstance(test, dict) else {"eq": test}
        actual = scores.get(name)
        for op, value in ops.items():
            if not holds(op, actual, value):
                fail(f"score.{name}: expected {op} {value!r}, got {actual!r}")
    for rule in expect.get("fired", []):
        if rule not in fired:
            fail(f"fired: expected rule {rule!r} to fire; fired: {', '.join(dict.fromkeys(fired))}")
    for rule in expect.get("not_fired", []):
        if rule in fired:
            fail(f"not_fired: rule {rule!r} fired")
    for kind in expect.get("actions", []):
        if kind not in actions:
            fail(f"actions: expected a {kind!r} action; got {', '.join(sorted(actions)) or 'none'}")
    # the variants of an A/B test stand for one another: the test's lead gets one of them, by its
    # id, and an example says what the lifecycle sends, not which side of a test it falls on
    alike = {v: set(ab.variants) for ab in ab_steps(policy.policy) for v in ab.variants}
    went = {*sent, *(v for c in sent for v in alike.get(c, ()))}
    missing = [c for c in expect.get("sent", []) if c not in went]
    if missing:
        fail(f"sent: expected {missing} to be sent; sent: {sent or 'nothing'}")
    if unwanted := [c for c in expect.get("not_sent", []) if c in went]:
        fail(f"not_sent: {unwanted} went out; sent: {sent}")
    if "states" in expect and not _in_order(expect["states"], trail.path):
        fail(f"states: expected the path {expect['states']}, got {trail.path}")
    return result


def _in_order(wanted: list[Any], path: list[str]) -> bool:
    """`wanted` appears in `path` as a contiguous run."""
    n = len(wanted)
    return any(path[i : i + n] == wanted for i in range(len(path) - n + 1))


def run_tests(policy: CompiledPolicy) -> list[CaseResult]:
    return [run_case(policy, case) for case in policy.policy.tests]
