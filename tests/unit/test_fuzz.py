"""Fuzzing, bounded: whatever arrives (a policy file ops wrote, an event a form sent, a `when:`
condition), the answer is a clear problem or a working result, never a traceback.

- Policy files: random YAML documents, random text, and the shipped policy with one random
  change at a random place (a value replaced, a key dropped or added, a list item repeated). A
  file is either refused with problems that each name the file, a line and what is wrong, or it
  loads, compiles, and evaluates a lead's events without an error.
- Conditions: random `when:` trees (known and unknown fields and operators, values of every
  type) in an otherwise valid policy: refused at the rule, or evaluated.
- Events: random JSON at the intake's check and the event model: refused with the field, or
  evaluated by the shipped policy into a Decision.

`make test` runs a fixed number of examples derived from the test names (reproducible);
`make fuzz` runs many more from fresh random seeds (LEADFLOW_FUZZ_EXAMPLES, LEADFLOW_FUZZ_RANDOM).
Every crash found is kept as an explicit case at the end of this file."""

from __future__ import annotations

import copy
import os
from datetime import timedelta
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadflow.intake import IntakeError, check_event
from rules.compile import compile_policy
from rules.evaluate import ChainLimitError, evaluate
from rules.models import Event
from rules.validate import LoadedPolicy, PolicyInvalid, load_policy_bytes
from rules.yaml_lines import load_yaml
from tests.support.policy import T0
from tests.support.temporal_harness import ROOT

EXAMPLES = int(os.environ.get("LEADFLOW_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize=not os.environ.get("LEADFLOW_FUZZ_RANDOM"),
                suppress_health_check=list(HealthCheck))
SHIPPED = ROOT / "policies" / "lead-lifecycle.v1.yaml"
SHIPPED_DOC = load_yaml(SHIPPED.read_bytes()).data  # YAML 1.2 reading: `on:` is a key, not True

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["nurturing", "sales-ready", "7d", "30 days", "vp", "signup", "page_view", "lead.role",
                     "score.total", "gte", "in", "exists", "", "-1d", "1e400"]))
trees = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), scalars.filter(
        lambda v: isinstance(v, (str, int, bool)))), inner, max_size=4)), max_leaves=12)


def _events(email: str = "ana@acme.example") -> list[tuple[Event, Any]]:
    lead = {"email": email, "role": "vp", "budget": 60000, "timeline": "now", "company_size": 300}
    kinds = ["signup", "page_view", "email_open", "webinar_attended", "demo_request", "check",
             "sales_reject", "unsubscribe", "check"]
    return [(Event.model_validate({"id": f"e{i}", "type": k, "at": T0 + timedelta(days=3 * i),
                                   "lead": lead if i == 0 else {"email": email},
                                   "data": {"page": "/pricing", "reason": "no budget"}}),
             T0 + timedelta(days=3 * i)) for i, k in enumerate(kinds)]


def _refused_clearly_or_works(raw: bytes) -> None:
    """The property every policy input must have."""
    try:
        loaded = load_policy_bytes(raw, "fuzz.yaml")
    except PolicyInvalid as err:
        assert err.problems, "refused without a problem"
        for problem in err.problems:
            text = str(problem)
            assert text.startswith("fuzz.yaml:"), text
            assert problem.line >= 1 and problem.message.strip(), text
        return
    _runs(loaded)


def _runs(loaded: LoadedPolicy) -> None:
    policy = compile_policy(loaded)
    lead = None
    for event, now in _events():
        if event.type not in policy.event_types:
            continue
        try:
            decision = evaluate(policy, lead, event, now)
        except ChainLimitError:  # a policy error the worker reports as such, with the chain
            return
        lead = decision.lead


def _dump(doc: Any) -> bytes:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode()


@FUZZ
@given(doc=trees)
def test_any_yaml_document_is_a_clear_problem_or_a_policy(doc):
    _refused_clearly_or_works(_dump(doc))


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_any_text_is_a_clear_problem_or_a_policy(text):
    _refused_clearly_or_works(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """The shipped policy with one change somewhere in its tree."""
    doc = copy.deepcopy(SHIPPED_DOC)
    node: Any = doc
    parent: Any = None
    key: Any = None
    for _ in range(draw(st.integers(0, 6))):
        if isinstance(node, dict) and node:
            parent, key = node, draw(st.sampled_from(sorted(node, key=str)))
        elif isinstance(node, list) and node:
            parent, key = node, draw(st.integers(0, len(node) - 1))
        else:
            break
        node = parent[key]
    change = draw(st.sampled_from(["replace", "drop", "add", "repeat"]))
    if parent is None or change == "add":
        target = node if isinstance(node, (dict, list)) else parent if parent is not None else doc
        if isinstance(target, dict):
            target[draw(st.text(min_size=1, max_size=8))] = draw(trees)
        elif isinstance(target, list):
            target.append(draw(trees))
    elif change == "replace":
        parent[key] = draw(trees)
    elif change == "drop":
        del parent[key]
    elif isinstance(parent, list):
        parent.append(copy.deepcopy(parent[key]))
    else:
        parent[key] = [copy.deepcopy(node), copy.deepcopy(node)]
    return doc


@FUZZ
@given(doc=mutated())
def test_the_shipped_policy_changed_anywhere_is_a_clear_problem_or_works(doc):
    _refused_clearly_or_works(_dump(doc))


FIELDS = ["lead.role", "lead.budget", "lead.email", "lead.company_size", "event.type", "event.page",
          "score.total", "score.fit", "score.intent", "score.bant", "facts.tier", "count.page_view.7d",
          "count.any.30d", "inactive_for", "in_state_for", "state", "track", "handoff_open", "lead",
          "nonsense.field", "count.page_view", "score.nope", "lead.a.b.c"]
OPS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists", "prefix", "suffix", "in_list",
       "not_in_list", "between", "matches"]
tests_ = st.builds(lambda f, op, v: {f: {op: v}} if op else {f: v}, st.sampled_from(FIELDS),
                   st.one_of(st.none(), st.sampled_from(OPS)), trees)
whens = st.recursive(tests_, lambda inner: st.one_of(
    st.builds(lambda items: {"all": items}, st.lists(inner, max_size=3)),
    st.builds(lambda items: {"any": items}, st.lists(inner, max_size=3)),
    st.builds(lambda item: {"not": item}, inner),
    st.dictionaries(st.sampled_from(FIELDS), trees, max_size=3)), max_leaves=8)


@FUZZ
@given(when=whens, where=st.sampled_from(["fit", "engagement", "stage"]))
def test_any_condition_is_refused_at_its_rule_or_evaluated(when, where):
    doc = copy.deepcopy(SHIPPED_DOC)
    if where == "fit":
        doc["scoring"]["fit"].append({"id": "fuzzed", "when": when, "points": 5})
    elif where == "engagement":
        doc["scoring"]["engagement"].append({"id": "fuzzed", "on": ["page_view"], "when": when, "points": 3})
    else:
        doc["rules"].insert(0, {"id": "fuzzed", "when": when, "then": {"set": {"tier": "fuzzed"}}})
    raw = _dump(doc)
    try:
        loaded = load_policy_bytes(raw, "fuzz.yaml")
    except PolicyInvalid as err:
        assert all(p.line >= 1 and p.message.strip() for p in err.problems)
        # refused at the fuzzed rule, not somewhere else in the file
        assert any(p.rule == "fuzzed" for p in err.problems), [str(p) for p in err.problems]
        return
    _runs(loaded)


@FUZZ
@given(raw=st.one_of(trees, st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(["signup", "page_view", "demo_request", "check", "nope"]), scalars),
     "lead": st.one_of(st.fixed_dictionaries({"email": st.one_of(st.emails(), scalars)}, optional={
         "external_id": scalars, "role": scalars, "budget": scalars, "company_size": scalars}), trees)},
    optional={"id": scalars, "at": st.one_of(st.datetimes().map(str), scalars), "data": trees})))
def test_any_event_is_refused_with_its_field_or_evaluated(raw):
    try:
        checked = check_event(raw)
    except IntakeError as err:
        assert str(err).startswith("bad event: "), err
        return
    event = Event.model_validate(checked)
    policy = compile_policy(load_policy_bytes(SHIPPED.read_bytes(), SHIPPED.name))
    decision = evaluate(policy, None, event, T0)
    assert decision.rejected is None or "unknown event type" in decision.rejected


def test_crashes_found_by_fuzzing_stay_fixed():
    shipped = SHIPPED.read_text()
    # a key YAML reads as a boolean (or number, or null) passed the schema and broke the model
    bad = shipped.replace("set: {dormant: true}", "set: {false: true}")
    assert bad != shipped
    with pytest.raises(PolicyInvalid) as err:
        load_policy_bytes(bad.encode(), "p.yaml")
    (problem,) = err.value.problems
    line = next(n for n, text in enumerate(bad.splitlines(), 1) if "set: {false: true}" in text)
    assert str(problem) == (f"p.yaml:{line}: track re-engage: nurture.tracks.re-engage.on_exhausted.set: "
                            "the key False is not text; quote it")
