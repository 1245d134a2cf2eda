"""The `when:` language: normalise it into a small tree, check it, and emit durable-rules JSON.

Semantics ops can rely on: a test on a field the lead does not have is false, except `ne`,
`not_in` and `exists: false`, which hold for a missing field (so `lead.role: {ne: student}` is
true for a lead with no role). `not:` is pushed down to the tests with those same semantics,
because durable-rules has no negation operator.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Union

from rules.durations import parse_duration

COMPARISONS = ("gt", "gte", "lt", "lte")
SHORT_LIST = 8  # longer `in`/`not_in` lists are one lookup (see members)
NEGATION = {
    "eq": "ne", "ne": "eq", "gt": "lte", "gte": "lt", "lt": "gte", "lte": "gt",
    "in": "not_in", "not_in": "in",
}
SCORE_FIELDS = ("fit", "interest", "intent", "engagement", "total", "bant")
TIME_FIELDS = ("inactive_for", "in_state_for")
PLAIN_FIELDS = ("state", "track", "handoff_open")
# Characters the engine's regex dialect treats specially; a character class escapes them.
_REGEX_SPECIAL = set(".*+?(){}|^$")
_REGEX_UNSAFE = set("[]\\")


class ConditionError(ValueError):
    def __init__(self, path: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Test:
    field: str  # the path as written, e.g. lead.role, count.page_view.7d
    key: str  # the fact path in the engine, e.g. lead.role, count.page_view.s604800
    op: str
    value: Any
    where: tuple[Any, ...]


@dataclass(frozen=True)
class All:
    items: tuple[Cond, ...]


@dataclass(frozen=True)
class Any_:
    items: tuple[Cond, ...]


Cond = Union[Test, All, Any_]  # noqa: UP007 (a runtime alias; `|` needs 3.10 objects)


@dataclass(frozen=True)
class CountSpec:
    type: str
    window: float

    @functools.cached_property
    def key(self) -> str:
        return f"s{int(self.window)}"


def field_key(field: str, where: tuple[Any, ...]) -> tuple[str, CountSpec | None]:
    """Map a field path of the policy to the fact path the engine sees, or raise."""
    head, _, rest = field.partition(".")
    if field in PLAIN_FIELDS or field in TIME_FIELDS:
        return field, None
    if head in ("lead", "event", "facts") and rest and _is_path(rest):
        return field, None
    if head == "score" and rest in SCORE_FIELDS:
        return field, None
    if head == "count":
        kind, _, window = rest.partition(".")
        if not kind or not window:
            raise ConditionError(where, f"write counts as count.<event type>.<window>: {field!r}")
        try:
            seconds = parse_duration(window)
        except ValueError as err:
            raise ConditionError(where, str(err)) from None
        spec = CountSpec(kind, seconds)
        return f"count.{kind}.{spec.key}", spec
    raise ConditionError(
        where,
        f"unknown field {field!r}: use state, track, handoff_open, inactive_for, in_state_for, "
        f"lead.<name>, event.<name>, facts.<name>, score.<{'|'.join(SCORE_FIELDS)}> "
        "or count.<event type>.<window>",
    )


def _is_path(text: str) -> bool:
    return all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part) for part in text.split("."))


def parse_when(when: dict[str, Any], lists: dict[str, list[Any]], where: tuple[Any, ...]) -> Cond:
    items: list[Cond] = []
    for name, spec in when.items():
        here = (*where, name)
        if name == "all":
            items.append(_all([parse_when(w, lists, (*here, i)) for i, w in enumerate(spec)]))
        elif name == "any":
            items.append(Any_(tuple(parse_when(w, lists, (*here, i)) for i, w in enumerate(spec))))
        elif name == "not":
            items.append(negate(parse_when(spec, lists, here)))
        else:
            items.extend(_parse_tests(name, spec, lists, here))
    return _all(items)


def _all(items: list[Cond]) -> Cond:
    flat: list[Cond] = []
    for item in items:
        flat.extend(item.items if isinstance(item, All) else [item])
    return flat[0] if len(flat) == 1 else All(tuple(flat))


def _parse_tests(field: str, spec: Any, lists: dict[str, list[Any]], where: tuple[Any, ...]
                 ) -> Iterator[Test]:
    key, _ = field_key(field, where)
    ops = spec if isinstance(spec, dict) else {"eq": spec}
    for op, value in ops.items():
        here = (*where, op) if isinstance(spec, dict) else where
        if op in ("in_list", "not_in_list"):
            if value not in lists:
                known = ", ".join(sorted(lists)) or "none"
                raise ConditionError(here, f"unknown list {value!r} (lists: {known})")
            op, value = ("in" if op == "in_list" else "not_in"), list(lists[value])
        if field in TIME_FIELDS and op in COMPARISONS:
            try:
                value = parse_duration(value)
            except ValueError as err:
                raise ConditionError(here, f"{field} compares with a duration: {err}") from None
        elif op in COMPARISONS and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise ConditionError(here, f"{op} needs a number, got {value!r}")
        for number in value if isinstance(value, list) else [value]:
            if problem := _inexact(number):
                raise ConditionError(here, problem)
        if op in ("prefix", "suffix") and set(value) & _REGEX_UNSAFE:
            raise ConditionError(here, f"{op} may not contain [, ] or backslash: {value!r}")
        if op == "in" and not value:
            raise ConditionError(here, "`in` with an empty list can never hold")
        if op in ("eq", "ne", "in", "not_in") and None in (value if isinstance(value, list) else [value]):
            raise ConditionError(here, f"{op} compares with null, which no field holds: "
                                 "write `exists: false` (or `exists: true`)")
        if op in ("in", "not_in"):
            value = list(dict.fromkeys(value))  # a value listed twice is one value
        yield Test(field, key, op, value, here)


def _inexact(value: Any) -> str | None:
    """Why a number in a condition cannot be compared exactly, if it cannot."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} is not a number a lead can have"
    if isinstance(value, int) and abs(value) > 2**53:
        try:
            exact = float(value) == value
        except OverflowError:
            exact = False
        if not exact:
            return (f"{value} has more digits than the rules engine compares exactly "
                    f"(it works in 64-bit floating point): round it, e.g. to {float(value):.15g}")
    return None


def negate(cond: Cond) -> Cond:
    if isinstance(cond, All):
        return Any_(tuple(negate(c) for c in cond.items))
    if isinstance(cond, Any_):
        return All(tuple(negate(c) for c in cond.items))
    if cond.op == "exists":
        return Test(cond.field, cond.key, "exists", not cond.value, cond.where)
    if cond.op in NEGATION:
        return Test(cond.field, cond.key, NEGATION[cond.op], cond.value, cond.where)
    raise ConditionError(cond.where, f"`not` cannot negate {cond.op}; write the opposite test")


def fields_of(cond: Cond) -> list[Test]:
    if isinstance(cond, Test):
        return [cond]
    return [t for c in cond.items for t in fields_of(c)]


def _regex(value: str) -> str:
    return "".join(f"[{c}]" if c in _REGEX_SPECIAL else c for c in value)


def shadow(key: str, value: Any) -> str:
    """The fact property a test against `value` reads. Numbers (booleans among them) compare
    only with numbers and texts only with texts, as in Python: the engine would compare a text
    with a number as two texts ("50k" >= 10000 holds there). So a field's value goes to the
    engine as `<key>#n` when it is a number and `<key>#s` when it is a text, and `<key>` itself
    only says that the field is there (rules.index_plan builds the fact)."""
    if isinstance(value, (int, float)):
        return f"{key}#n"
    if isinstance(value, str):
        return f"{key}#s"
    return key


def members(test: Test) -> str | None:
    """The fact property for a long `in`/`not_in` list, which the engine takes as one lookup:
    present when the field's value is in the list (tested in Python, as `in` reads). As many
    alternatives as values would make one engine node with that many children (at 512 the
    engine never returns) and a rule too wide for its 32 expressions."""
    if test.op not in ("in", "not_in") or len(test.value) <= SHORT_LIST:
        return None
    digest = hashlib.blake2b(repr(sorted(map(repr, test.value))).encode(), digest_size=6).hexdigest()
    return f"{test.key}#in{digest}"


def props_of(test: Test) -> list[str]:
    """The fact properties one test reads (see shadow)."""
    if (prop := members(test)) is not None:
        return [prop]
    if test.op in COMPARISONS:
        return [f"{test.key}#n"]
    if test.op in ("prefix", "suffix"):
        return [f"{test.key}#s"]
    if test.op in ("in", "not_in"):
        return list(dict.fromkeys(shadow(test.key, v) for v in test.value)) or [test.key]
    if test.op == "exists":
        return [test.key]
    return [shadow(test.key, test.value)]


def to_engine(cond: Cond) -> dict[str, Any]:
    """durable-rules JSON for a condition (one pattern; the caller adds the phase tag)."""
    if isinstance(cond, All):
        return {"$and": [to_engine(c) for c in cond.items]}
    if isinstance(cond, Any_):
        return {"$or": [to_engine(c) for c in cond.items]}
    key, op, value = cond.key, cond.op, cond.value
    if (prop := members(cond)) is not None:
        return {"$ex": {prop: 1}} if op == "in" else {"$nex": {prop: 1}}
    if op == "eq":
        return {shadow(key, value): value}
    if op == "ne":
        return _ne(shadow(key, value), [value])
    if op in COMPARISONS:
        return {f"${op}": {f"{key}#n": value}}
    if op == "in":
        alts = [{shadow(key, v): v} for v in value]
        return alts[0] if len(alts) == 1 else {"$or": alts}
    if op == "not_in":
        if not value:
            return {"$or": [{"$ex": {key: 1}}, {"$nex": {key: 1}}]}
        by_prop: dict[str, list[Any]] = {}
        for v in value:
            by_prop.setdefault(shadow(key, v), []).append(v)
        parts = [_ne(prop, values) for prop, values in by_prop.items()]
        return parts[0] if len(parts) == 1 else {"$and": parts}
    if op == "prefix":
        return {"$mt": {f"{key}#s": _regex(value) + ".*"}}
    if op == "suffix":
        return {"$mt": {f"{key}#s": ".*" + _regex(value)}}
    if op == "exists":
        return {"$ex": {key: 1}} if value else {"$nex": {key: 1}}
    raise AssertionError(f"unhandled op {op}")


def _ne(prop: str, values: list[Any]) -> dict[str, Any]:
    """None of `values`: the property differs from each, or is absent (another type, or none)."""
    differs = [{"$neq": {prop: v}} for v in values]
    return {"$or": [differs[0] if len(differs) == 1 else {"$and": differs}, {"$nex": {prop: 1}}]}


def holds(op: str, actual: Any, expected: Any) -> bool:
    """Python reading of one test, used for policy-test expectations on scores and facts."""
    if op == "exists":
        return (actual is not None) == bool(expected)
    if op == "ne":
        return bool(actual != expected)
    if op == "not_in":
        return actual not in expected
    if actual is None:
        return False
    if op == "eq":
        return bool(actual == expected)
    if op == "in":
        return actual in expected
    if op == "prefix":
        return isinstance(actual, str) and actual.startswith(expected)
    if op == "suffix":
        return isinstance(actual, str) and actual.endswith(expected)
    try:
        return bool({
            "gt": actual > expected, "gte": actual >= expected,
            "lt": actual < expected, "lte": actual <= expected,
        }[op])
    except TypeError:
        return False


def impossible(cond: Cond) -> str | None:
    """A reason the condition can never hold, where that is knowable from the tests alone."""
    if isinstance(cond, Any_):
        reasons = [impossible(c) for c in cond.items]
        return reasons[0] if all(reasons) else None
    tests = [c for c in cond.items] if isinstance(cond, All) else [cond]
    for sub in tests:
        if not isinstance(sub, Test) and (why := impossible(sub)):
            return why
    by_field: dict[str, list[Test]] = {}
    for t in tests:
        if isinstance(t, Test):
            by_field.setdefault(t.key, []).append(t)
    for group in by_field.values():
        low, high = (float("-inf"), True), (float("inf"), True)  # (bound, inclusive)
        equals = set()
        for t in group:
            if t.op == "eq":
                equals.add(repr(t.value))
            elif t.op in ("gt", "gte"):
                bound = (t.value, t.op == "gte")
                if bound[0] > low[0] or (bound[0] == low[0] and not bound[1]):
                    low = bound
            elif t.op in ("lt", "lte"):
                bound = (t.value, t.op == "lte")
                if bound[0] < high[0] or (bound[0] == high[0] and not bound[1]):
                    high = bound
        name = group[0].field
        if len(equals) > 1:
            return f"{name} cannot equal {' and '.join(sorted(equals))} at once"
        if low[0] > high[0] or (low[0] == high[0] and not (low[1] and high[1])):
            return f"{name} cannot be both above {low[0]:g} and below {high[0]:g}"
        for t in group:
            if t.op == "eq" and isinstance(t.value, (int, float)) and not isinstance(t.value, bool):
                above = t.value > low[0] or (low[1] and t.value == low[0])
                below = t.value < high[0] or (high[1] and t.value == high[0])
                if not (above and below):
                    return f"{name} = {t.value!r} contradicts its range"
    return None


def state_sources(cond: Cond) -> tuple[frozenset[str] | None, bool]:
    """States a rule can fire from (None = any), and whether state is its only guard."""
    tests = list(cond.items) if isinstance(cond, All) else [cond]
    sources: frozenset[str] | None = None
    others = 0
    for t in tests:
        if isinstance(t, Test) and t.field == "state" and t.op in ("eq", "in"):
            values = frozenset(t.value if isinstance(t.value, list) else [t.value])
            sources = values if sources is None else sources & values
        else:
            others += 1
    return sources, others == 0
