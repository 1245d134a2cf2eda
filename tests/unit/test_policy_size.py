"""Policy size is a non-event: the limits durable-rules has (a walk stack of 64, 512 children a
node, 255 properties a fact) are never reached by what the compiler gives it, and whatever the
layout, every rule matches exactly when Python's reading of its conditions says so."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from activities.evaluation import Catalog, EvaluateBatch
from activities.evaluator_pool import EvaluatorPool
from rules import conditions, index_plan
from rules.conditions import holds
from rules.engine import EngineError
from rules.evaluate import evaluate
from rules.validate import PolicyInvalid
from tests.support.policy import MINIMAL, T0, event, policy_from


def _fit(rules: list[str]) -> str:
    return MINIMAL + "scoring:\n  fit_cap: 100000\n  fit:\n" + "\n".join(rules) + "\n"


def _the_problem(text: str):
    """The one problem validation finds in the policy."""
    with pytest.raises(PolicyInvalid) as err:
        policy_from(text)
    (problem,) = err.value.problems
    return problem


def test_seventy_thresholds_a_lead_passes_all_fire(monkeypatch):
    rules = [f"    - {{id: size-{i}, when: {{lead.company_size: {{gte: {10 * i}}}}}, points: 1}}"
             for i in range(70)]
    policy = policy_from(_fit(rules))
    assert not policy.plans["fit"].flat
    d = evaluate(policy, None, event("signup", lead={"company_size": 100_000}), T0)
    assert d.lead.fit == 70 and len([f for f in d.fired if f.kind == "fit"]) == 70
    d = evaluate(policy, None, event("signup", lead={"company_size": 235}), T0)
    assert d.lead.fit == 24  # thresholds 0, 10, ... 230
    # The same rules laid out flat, as before: every such lead failed with error 303.
    monkeypatch.setattr(index_plan, "FLAT_LIMIT", 10_000)
    flat = policy_from(_fit(rules) + "# flat\n")
    with pytest.raises(EngineError, match="error code: 303"):
        evaluate(flat, None, event("signup", lead={"company_size": 100_000}), T0)


def test_six_hundred_values_of_one_field_and_six_hundred_prefixes_evaluate_in_an_evaluator():
    """Flat, 600 tests of one field fill a node's 512 slots and the engine never returns (see
    tests/unit/test_engine_safety.py); an evaluator process with a deadline would notice."""
    fit = [f"    - {{id: country-{i}, when: {{lead.country: c{i}}}, points: 1}}" for i in range(600)]
    pages = [f"    - {{id: page-{i}, on: page_view, when: {{event.path: {{prefix: /docs/p{i}/}}}}, "
             "points: 1, signal: interest}" for i in range(600)]
    text = _fit(fit) + "  engagement:\n" + "\n".join(pages) + "\n"
    policy = policy_from(text)
    lead = evaluate(policy, None, event("signup", lead={"country": "c417"}), T0).lead
    batch = EvaluateBatch(lead=lead, now=T0, version=1, events=[
        event("page_view", T0, path="/docs/p42/intro"), event("page_view", T0, path="/docs/p600/x")])

    async def go():
        pool = EvaluatorPool(1, deadline=10, load_deadline=60)
        try:
            return await pool.evaluate(Catalog(policy), batch)
        finally:
            pool.close()

    result = asyncio.run(go())
    assert result.errors == [None, None]
    first, second = result.decisions
    scored = [f.rule for f in first.fired if f.kind in ("fit", "engagement")]
    assert scored == ["country-417", "page-42"]
    assert [f.rule for f in second.fired if f.kind in ("fit", "engagement")] == ["country-417"]


def test_validation_refuses_at_the_rule_what_the_engine_still_could_not_take():
    wide = ", ".join(f"{{lead.f{i}: {{gte: 1}}}}" for i in range(10))
    text = _fit([f"    - {{id: too-wide, when: {{any: [{wide}]}}, points: 1}}"])
    problem = _the_problem(text)
    assert (problem.line, problem.rule) == (text.count("\n"), "too-wide")
    assert "can hold 10 ways at once; the rules engine takes at most 8 per rule" in problem.message

    many = [f"    - {{id: field-{i}, when: {{lead.f{i}: {{exists: true}}}}, points: 1}}" for i in range(300)]
    text = _fit(many)
    problem = _the_problem(text)
    assert problem.rule == "field-250" and "holds at most 250" in problem.message
    assert problem.line == text.splitlines().index(many[250]) + 1


# -- every layout agrees with Python's reading of the conditions -------------------------------

FIELDS = ("lead.a", "lead.b", "lead.c")
scalars = st.one_of(st.integers(-3, 3), st.sampled_from(["x", "y", "xy", "yx", "1"]), st.booleans())


@st.composite
def field_tests(draw):
    field = draw(st.sampled_from(FIELDS))
    op = draw(st.sampled_from(["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "prefix", "suffix",
                               "exists"]))
    if op in ("gt", "gte", "lt", "lte"):
        value = draw(st.integers(-3, 3))
    elif op in ("in", "not_in"):
        value = draw(st.lists(scalars, min_size=1, max_size=4))
    elif op in ("prefix", "suffix"):
        value = draw(st.sampled_from(["x", "y", "xy"]))
    elif op == "exists":
        value = draw(st.booleans())
    else:
        value = draw(scalars)
    return {field: {op: value}}


whens_ = st.recursive(
    field_tests(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda items: {"all": items}),
        st.lists(inner, min_size=1, max_size=2).map(lambda items: {"any": items})),
    max_leaves=4)


def _reference(cond, values) -> bool:
    if isinstance(cond, conditions.Test):
        return holds(cond.op, values.get(cond.key), cond.value)
    if isinstance(cond, conditions.All):
        return all(_reference(c, values) for c in cond.items)
    assert isinstance(cond, conditions.Any_)
    return any(_reference(c, values) for c in cond.items)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(whens=st.lists(whens_, min_size=1, max_size=30),
       leads=st.lists(st.fixed_dictionaries({}, optional={k.split(".")[1]: scalars for k in FIELDS}),
                      min_size=1, max_size=6))
def test_every_layout_matches_exactly_what_python_reads(whens, leads):
    rules = [f"    - {{id: r{i}, when: {json.dumps(w)}, points: 1}}" for i, w in enumerate(whens)]
    layouts = []
    try:
        # flat, and indexed with an index for every field a rule tests (the smallest allowed)
        for name, limit, smallest in (("flat", 10_000, 6), ("indexed", 0, 1)):
            saved = index_plan.FLAT_LIMIT, index_plan.MIN_INDEX
            index_plan.FLAT_LIMIT, index_plan.MIN_INDEX = limit, smallest
            try:
                layouts.append(policy_from(_fit(rules) + f"# {name}\n"))
            finally:
                index_plan.FLAT_LIMIT, index_plan.MIN_INDEX = saved
    except PolicyInvalid:  # a condition that can never hold, or too many alternatives
        assume(False)
    assert [p.plans["fit"].flat for p in layouts] == [True, False]
    for policy in layouts:
        by_id = {r.id: r for r in policy.rules.values()}
        for profile in leads:
            d = evaluate(policy, None, event("signup", lead=profile), T0)
            values = {f"lead.{k}": v for k, v in profile.items()}
            want = {f"r{i}" for i in range(len(whens)) if _reference(by_id[f"r{i}"].cond, values)}
            got = {f.rule for f in d.fired if f.kind == "fit"}
            assert got == want, (profile, "flat" if policy.plans["fit"].flat else "indexed")


def test_validation_refuses_the_rule_past_what_one_engine_ruleset_takes(monkeypatch):
    monkeypatch.setattr(index_plan, "MAX_RULES", 50)  # 4,000 in truth; the same check, quicker
    rules = [f"    - {{id: r{i}, when: {{lead.country: c{i}}}, points: 1}}" for i in range(60)]
    text = _fit(rules)
    problem = _the_problem(text)
    assert problem.rule == "r50" and "more than 50 rules of this kind" in problem.message
    assert problem.line == text.splitlines().index(rules[50]) + 1


def test_long_lists_and_indexed_in_lists_are_taken_by_the_engine():
    """An `in` of 27 values under an index once made a rule too wide for the engine (error 113),
    and an `in_list` of 600 values a node it never finished registering."""
    eu = [f"c{i}" for i in range(27)]
    world = [f"w{i}" for i in range(600)]
    rules = [f"    - {{id: size-{i}, when: {{lead.size: {{gte: {i}}}}}, points: 1}}" for i in range(30)]
    rules += [f"    - {{id: country-{i}, when: {{lead.country: c{i}}}, points: 2}}" for i in range(6)]
    rules += ["    - {id: europe, when: {lead.country: {in_list: eu}}, points: 4}",
              "    - {id: anywhere, when: {lead.country: {in_list: world}}, points: 8}",
              "    - {id: nordics, when: {lead.region: {in: [se, no, dk, fi, is, fo]}}, points: 16}",
              "    - {id: not-eu, when: {lead.country: {not_in_list: eu}}, points: 32}"]
    text = _fit(rules) + f"lists: {{eu: {json.dumps(eu)}, world: {json.dumps(world)}}}\n"
    policy = policy_from(text)
    assert not policy.plans["fit"].flat

    async def go():
        pool = EvaluatorPool(1, deadline=10, load_deadline=60)
        events = [event("signup", T0, email=f"{c}@x.example", lead={"country": c, "region": r, "size": 0})
                  for c, r in (("c3", "se"), ("w17", "fi"), ("zz", "de"))]
        try:
            return [await pool.evaluate(Catalog(policy), EvaluateBatch(lead=None, now=T0, events=[e]))
                    for e in events]
        finally:
            pool.close()

    (eu_lead,), (world_lead,), (elsewhere,) = [r.decisions for r in asyncio.run(go())]
    assert eu_lead.lead.fit == 1 + 2 + 4 + 16  # size-0, country-3, europe, nordics
    assert world_lead.lead.fit == 1 + 8 + 16 + 32
    assert elsewhere.lead.fit == 1 + 32


def test_a_rule_with_more_groups_than_the_engine_takes_is_refused_at_its_line():
    many = ", ".join(f"lead.f{i}: {{ne: {i}}}" for i in range(16))
    text = _fit([f"    - {{id: picky, when: {{{many}}}, points: 1}}"])
    problem = _the_problem(text)
    assert (problem.line, problem.rule) == (text.count("\n"), "picky")
    assert "make 17 groups" in problem.message and "at most 15 in one rule" in problem.message
