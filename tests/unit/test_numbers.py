"""No number a user can send loses an event, and conditions on numbers keep Python's answers.

durable-rules refuses `1e+16` and `1e-05` (its reader takes an exponent only after a point),
compares integers past 2**53 as doubles, and compared a text with a number as two texts. These
tests send numbers of every magnitude and sign through the profile, the event data and the
conditions, in both layouts the compiler uses (flat, and indexed above 32 rules), and check
every rule against Python's reading of the same test (rules.conditions.holds)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow.intake import IntakeError, check_event
from rules.conditions import _inexact, holds
from rules.engine_json import number
from rules.evaluate import evaluate
from rules.models import Event
from tests.support.policy import MINIMAL, T0, event, policy_from

OPS = ("eq", "ne", "gt", "gte", "lt", "lte")
EDGES = [0, -0.0, 1e16, -1e16, 1e-05, -1e-05, 2**53, 2**53 + 1, -(2**53) - 1, 2**63, -(2**63) - 1,
         10**30, -(10**30), 1.7976931348623157e308, -1.7976931348623157e308, 5e-324, 0.1, 1e300]
values = st.one_of(
    st.sampled_from(EDGES),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.sampled_from(["50000", "abc", "1e16", ""]),
)
constants = st.one_of(
    st.sampled_from(EDGES),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
).filter(lambda c: _inexact(c) is None)


def _yaml(value: float) -> str:
    return number(value)  # YAML 1.1 reads a float only with a point: `1.0e+16`, as the engine


def _policy(c: float, pad: int):
    fit = "\n".join(f"    - {{id: lead-{op}, when: {{lead.x: {{{op}: {_yaml(c)}}}}}, points: 1}}"
                    for op in OPS)
    engagement = "\n".join(
        f"    - {{id: event-{op}, on: page_view, when: {{event.v: {{{op}: {_yaml(c)}}}}}, points: 1, "
        f"signal: interest}}" for op in OPS)
    padding = "\n".join(f"    - {{id: pad-{i}, when: {{lead.region: r{i}}}, points: 1}}" for i in range(pad))
    return policy_from(MINIMAL + f"scoring:\n  fit:\n{fit}\n{padding}\n  engagement:\n{engagement}\n",
                       name=f"numbers-{pad}.yaml")


def _fired(decision, kind: str) -> set[str]:
    return {f.rule.split("-", 1)[1] for f in decision.fired
            if f.kind == kind and not f.rule.startswith("pad")}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values, data_value=values, c=constants, pad=st.sampled_from([0, 40]))
def test_every_number_compares_as_python_says_in_profile_and_event_data(value, data_value, c, pad):
    policy = _policy(c, pad)
    assert policy.plans["fit"].flat == (pad == 0)
    lead = evaluate(policy, None, event("signup", lead={"x": value}), T0).lead
    d = evaluate(policy, lead, event("page_view", T0, v=data_value), T0)
    assert d.rejected is None
    assert _fired(d, "fit") == {op for op in OPS if holds(op, value, c)}
    assert _fired(d, "engagement") == {op for op in OPS if holds(op, data_value, c)}


@pytest.mark.parametrize("big", [1e16, 1e-05, -3.5e-300, 10**30, 2**63 + 1, 123456789012345678])
def test_a_sign_up_with_a_big_or_tiny_number_is_captured(default_policy, big):
    d = evaluate(default_policy, None,
                 event("signup", lead={"role": "vp", "budget": big, "company_size": big}, ratio=big), T0)
    assert d.rejected is None and d.state == "nurturing"
    assert d.lead.profile["budget"] == big
    budget_set = any(f.rule == "budget-set" for f in d.fired)
    assert budget_set == (big >= 10000)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_refused_at_the_door_saying_where(bad):
    with pytest.raises(IntakeError, match=r"bad event: lead: budget is (nan|inf|-inf): only finite"):
        check_event({"type": "signup", "lead": {"email": "a@b.example", "budget": bad}})
    with pytest.raises(ValidationError, match=r"x.y\[1\] is"):
        Event.model_validate({"type": "page_view", "lead": {"email": "a@b.example"},
                              "data": {"x": {"y": [1, bad]}}})


def test_a_constant_the_engine_cannot_compare_exactly_is_refused_at_its_line():
    from rules.validate import PolicyInvalid

    text = MINIMAL + ("scoring:\n  fit:\n"
                      "    - {id: huge, when: {lead.budget: {gte: 9007199254740993}}, points: 1}\n")
    with pytest.raises(PolicyInvalid) as err:
        policy_from(text)
    (problem,) = err.value.problems
    assert problem.line == text.count("\n") and problem.rule == "huge"
    assert "more digits than the rules engine compares exactly" in problem.message


def test_a_policy_may_write_numbers_with_an_exponent():
    text = MINIMAL + ("scoring:\n  fit:\n"
                      "    - {id: whale, when: {lead.budget: {gte: 1e6}}, points: 10}\n"
                      "    - {id: tiny, when: {lead.rate: {lt: 5e-4}}, points: 1}\n")
    policy = policy_from(text)
    d = evaluate(policy, None, event("signup", lead={"budget": 2_000_000, "rate": 0.0001}), T0)
    assert {f.rule for f in d.fired if f.kind == "fit"} == {"whale", "tiny"}
