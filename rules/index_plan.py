"""How a policy's rules are laid out for durable-rules, so policy size is a non-event.

What the engine costs and where it breaks (measured on 2.0.28, see README "Design notes"):
- it walks its alpha network depth-first with a fixed stack of 64 (`MAX_STACK_SIZE`, error
  303 when more nodes are pending at once, e.g. 64 company-size thresholds a lead passes);
- a node keeps its children in a 512-slot table probed from only 32 start slots, once per
  property of the fact: a node with n children costs about n steps per fact property, and at
  512 children inserting or probing never ends (the hang at about 500 rules);
- a fact holds at most 255 properties (error 302).

So the compiler gives the engine a tree it can walk cheaply:
- **Projection.** A fact carries only the fields some rule of its phase reads, flat, one
  property each (`lead.role`, `count.page_view.s604800`), not the whole lead.
- **Index.** When a phase has more rules than fit flat, each rule is filed under its most
  selective test: a value (`lead.country: c5`, `event.type: {in: [...]}`), a range over one
  numeric field (bands: all the thresholds over `lead.company_size` cut the line into
  intervals, and a lead's value is looked up once as its interval number), or a text prefix or
  suffix. The fact carries, per index, the number of its value's entry (`~3: 417`, looked up in
  Python with a dict or one bisect) and, for big indexes, that number's base-DIGIT digits; the
  engine descends by equality, one child per level (a band, by a tree of ranges with at most
  FANOUT children a node), and matches the rule's remaining tests below. Rules with no such
  test sit under always-true grouping nodes (a test that a never-present property is absent
  costs one lookup).
- **Limits checked up front.** Every phase's tree has a computed bound on the engine's stack,
  and `leadflow policy validate` refuses, at the rule's line, what would still not fit.

Evaluation then costs what could match, not what exists: a 4,000-rule policy is walked down to
the few dozen rules whose indexed test holds (bench/policy_size.py).
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rules.conditions import COMPARISONS, SHORT_LIST, All, Cond, Test, fields_of, members, props_of, to_engine

FLAT_LIMIT = 32  # rules (by weight) of a phase that hang straight under its tag
FANOUT = 8  # children of any node the compiler lays out (but equality levels: DIGIT)
DIGIT = 32  # entries per level of a point index: its children exclude each other
MIN_INDEX = 6  # fewer rules than this under one index are cheaper walked as they are
MAX_STACK = 56  # the engine's walk stack holds 64 pending nodes; keep a margin
MAX_WEIGHT = 8  # alternatives of one rule that can hold at once
MAX_PROPERTIES = 250  # per fact: the engine takes 255, less sid, id and the phase tag
MAX_RULES = 4000  # per phase (one engine ruleset): the engine takes 4,096 rules a ruleset
MAX_GROUPS = 15  # `$and`/`$or` groups in one rule's pattern: two expressions each, 31 at most

Path = tuple[Any, ...]


@dataclass(frozen=True)
class PlanRule:
    name: str  # the rule's name in the engine
    cond: Cond
    where: Path  # its `when` in the policy file, for problems


@dataclass(frozen=True)
class FieldRef:
    """One fact property: its key and where its value comes from."""

    key: str
    source: str  # lead, event, facts, score, count or plain
    path: tuple[str, ...]


class LimitError(ValueError):
    def __init__(self, where: Path, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


# -- indexes ---------------------------------------------------------------------------------


@dataclass
class _Index:
    """One index over one field: how a value becomes entry numbers on the fact.

    A point index (a value, a prefix or a suffix) numbers its entries; the fact carries the
    entry's number and, for big indexes, its base-DIGIT digits (`~3` = 417, `~3:1` = 26,
    `~3:2` = 1), so the engine descends by equality, one child per level. A band index carries
    the number of the interval the value falls in, between all thresholds of its rules."""

    number: int
    kind: str  # value, band, prefix or suffix
    field_key: str
    ids: dict[Any, int] = field(default_factory=dict)  # value / prefix / suffix -> entry
    cuts: list[tuple[float, int]] = field(default_factory=list)  # band: (threshold, 0 before | 1 after)
    lengths: tuple[int, ...] = ()  # prefix / suffix: the lengths to try, shortest first
    slots: int = 1  # prefix / suffix: how many may match at once (nested prefixes)
    levels: int = 1  # point: digits the engine descends by

    def base(self, slot: int = 0) -> str:
        return f"~{self.number}" if self.kind in ("value", "band") else f"~{self.number}.{slot}"

    def props(self) -> int:
        return 1 if self.kind == "band" else self.slots * self.levels

    def seal(self) -> None:
        """Fix what the fill writes for each entry (called once the index is complete)."""
        def pairs(slot: int, entry: int) -> tuple[tuple[str, int], ...]:
            base = self.base(slot)
            return ((base, entry), *((f"{base}:{level}", entry // DIGIT ** level)
                                     for level in range(1, self.levels)))

        self._pairs = [[pairs(slot, entry) for entry in range(len(self.ids))] for slot in range(self.slots)]
        self._band = self.base()

    def fill(self, fact: dict[str, Any], value: Any) -> None:
        """Add this index's entries for `value` (not None) to the fact."""
        kind = self.kind
        if kind == "value":
            try:
                entry = self.ids.get(value)
            except TypeError:  # unhashable: an object or list is equal to no constant
                return
            if entry is not None:
                fact.update(self._pairs[0][entry])
        elif kind == "band":
            if isinstance(value, (int, float)):
                fact[self._band] = bisect.bisect_right(self.cuts, (value, 0.5))
        elif isinstance(value, str):
            slot = 0
            for n in self.lengths:
                if n > len(value):
                    break
                entry = self.ids.get(value[:n] if kind == "prefix" else value[-n:])
                if entry is not None:
                    fact.update(self._pairs[slot][entry])
                    slot += 1


@dataclass(frozen=True)
class _Key:
    """A rule's indexable test: which index, and the entries (or band range) it needs."""

    kind: str
    field_key: str
    tests: tuple[Test, ...]
    points: tuple[Any, ...] = ()  # value / prefix / suffix
    bounds: tuple[tuple[str, float], ...] = ()  # band: (op, threshold)


def _keys_of(cond: Cond) -> list[_Key]:
    tests = [t for t in (cond.items if isinstance(cond, All) else (cond,)) if isinstance(t, Test)]
    keys: list[_Key] = []
    ranges: dict[str, list[Test]] = {}
    for t in tests:
        if t.op == "eq" and _indexable(t.value):
            keys.append(_Key("value", t.key, (t,), points=(t.value,)))
        elif t.op == "in" and len(t.value) <= SHORT_LIST and all(_indexable(v) for v in t.value):
            keys.append(_Key("value", t.key, (t,), points=tuple(dict.fromkeys(t.value))))
        elif t.op in ("prefix", "suffix"):
            keys.append(_Key(t.op, t.key, (t,), points=(t.value,)))
        elif t.op in COMPARISONS:
            ranges.setdefault(t.key, []).append(t)
    for key, group in ranges.items():
        keys.append(_Key("band", key, tuple(group), bounds=tuple((t.op, t.value) for t in group)))
    return keys


def _indexable(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and value == value


def _band_range(cuts: list[tuple[float, int]], bounds: Iterable[tuple[str, float]]) -> tuple[int, int]:
    """The band numbers a value may have for all `bounds` to hold (see _Index.fill)."""
    lo, hi = 0, len(cuts)
    for op, t in bounds:
        before = bisect.bisect_left(cuts, (t, 0))
        after = bisect.bisect_left(cuts, (t, 1))
        if op == "gte":
            lo = max(lo, before + 1)
        elif op == "gt":
            lo = max(lo, after + 1)
        elif op == "lt":
            hi = min(hi, before)
        else:  # lte
            hi = min(hi, after)
    return lo, hi


def _cut(op: str, t: float) -> tuple[float, int]:
    return (t, 0) if op in ("gte", "lt") else (t, 1)


# -- the tree the engine walks ---------------------------------------------------------------


@dataclass
class _Node:
    tests: list[dict[str, Any]]  # the chain of engine tests on the way into this node
    children: list[_Node] = field(default_factory=list)
    rules: list[tuple[str, int]] = field(default_factory=list)  # (rule, weight) that start here
    exclusive: bool = False  # children test one property for equality: one at most holds

    def bound(self) -> int:
        """Nodes pending at once on the engine's stack in the worst case below this node."""
        below = [c.bound() for c in self.children] + [w for _, w in self.rules]
        if not below:
            return 0
        children = min(1, len(self.children)) if self.exclusive else len(self.children)
        return children + len(self.rules) - 1 + max(below)


class _Always:
    """Always-true grouping nodes: a test that a never-present property is absent costs one
    lookup, and keeps any node's children at FANOUT or fewer."""

    def __init__(self) -> None:
        self._n = itertools.count()

    def __call__(self, children: list[_Node] | None = None, rules: list[tuple[str, int]] | None = None
                 ) -> _Node:
        return _Node([{"$nex": {f"~g{next(self._n)}": 1}}], children or [], rules or [])

    def group(self, nodes: list[_Node]) -> list[_Node]:
        while len(nodes) > FANOUT:
            nodes = [self(nodes[i:i + FANOUT]) for i in range(0, len(nodes), FANOUT)]
        return nodes

    def attach(self, node: _Node, rules: list[tuple[str, int]]) -> None:
        if len(rules) <= FANOUT:
            node.rules.extend(rules)
        else:
            node.children.extend(self.group(
                [self(rules=rules[i:i + FANOUT]) for i in range(0, len(rules), FANOUT)]))


def _point_tree(index: _Index, slot: int, entries: dict[int, list[tuple[str, int]]],
                always: _Always) -> _Node:
    """Entry number digit by digit, by equality: one child holds at each level."""
    base = index.base(slot)
    top = base if index.levels == 1 else f"{base}:{index.levels - 1}"
    root = _Node([{"$ex": {top: 1}}], exclusive=True)
    made: dict[tuple[int, int], _Node] = {}
    for entry, rules in sorted(entries.items()):
        parent = root
        for level in range(index.levels - 1, 0, -1):
            digit = entry // DIGIT ** level
            node = made.get((level, digit))
            if node is None:
                node = made[(level, digit)] = _Node([{f"{base}:{level}": digit}], exclusive=True)
                parent.children.append(node)
            parent = node
        leaf = _Node([{base: entry}])
        parent.children.append(leaf)
        always.attach(leaf, rules)
    return root


def _band_tree(index: _Index, spans: dict[tuple[int, int], list[tuple[str, int]]],
               always: _Always) -> _Node:
    """Interval numbers: rules' ranges in a tree of ranges, at most FANOUT children a node."""
    prop = index.base()
    nodes: list[tuple[int, int, _Node]] = []
    for (lo, hi), rules in sorted(spans.items()):
        leaf = _Node(_range_tests(prop, lo, hi))
        always.attach(leaf, rules)
        nodes.append((lo, hi, leaf))
    while len(nodes) > FANOUT:
        grouped = []
        for i in range(0, len(nodes), FANOUT):
            part = nodes[i:i + FANOUT]
            lo, hi = min(n[0] for n in part), max(n[1] for n in part)
            grouped.append((lo, hi, _Node(_range_tests(prop, lo, hi), [n[2] for n in part])))
        nodes = grouped
    return _Node([{"$ex": {prop: 1}}], [n[2] for n in nodes])


def _range_tests(prop: str, lo: int, hi: int) -> list[dict[str, Any]]:
    if lo == hi:
        return [{prop: lo}]
    return [{"$gte": {prop: lo}}, {"$lte": {prop: hi}}]


@dataclass
class PhasePlan:
    phase: str
    fields: tuple[FieldRef, ...]  # every field the phase's rules read (for the story, too)
    indexes: tuple[_Index, ...]
    patterns: dict[str, dict[str, Any]]  # engine rule name -> its single pattern
    stack_bound: int
    flat: bool
    # what the engine's patterns read (tests an index decides are not sent): (property, field,
    # "n" number | "s" text | "" presence | "m" member of the list), see rules.conditions.shadow
    sent: tuple[tuple[str, str, str, frozenset[Any]], ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)  # engine rule -> the rule it stands for

    def fact(self, values: dict[str, Any]) -> dict[str, Any]:
        """The fact for one match: the phase tag, the values the patterns test, index entries."""
        fact: dict[str, Any] = {"k": self.phase}
        for prop, key, kind, listed in self.sent:
            value = values[key]
            if value is None:
                continue
            if kind == "n":
                if isinstance(value, (int, float)):
                    fact[prop] = value
            elif kind == "s":
                if isinstance(value, str):
                    fact[prop] = value
            elif kind == "m":
                try:
                    if value in listed:
                        fact[prop] = 1
                except TypeError:  # an object or list is in no list of scalars
                    pass
            else:
                fact[prop] = 1
        for index in self.indexes:
            value = values[index.field_key]
            if value is not None:
                index.fill(fact, value)
        return fact


def field_ref(key: str) -> FieldRef:
    head, _, rest = key.partition(".")
    if head in ("lead", "event", "facts", "score", "count") and rest:
        return FieldRef(key, head, tuple(rest.split(".")))
    return FieldRef(key, "plain", (key,))


def weight(cond: Cond) -> int:
    """How many of a condition's alternatives can hold at once (each is a path the engine walks).
    Equality tests on one field in an `any` exclude each other."""
    if isinstance(cond, Test):
        return 1
    if isinstance(cond, All):
        return _product(weight(c) for c in cond.items)
    exclusive = {c.key for c in cond.items if isinstance(c, Test) and c.op in ("eq", "in")}
    return len(exclusive) + sum(weight(c) for c in cond.items
                                if not (isinstance(c, Test) and c.op in ("eq", "in")))


def _product(values: Iterable[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def plan_phase(phase: str, rules: list[PlanRule]) -> PhasePlan:
    """Lay out one phase's rules; raises LimitError for what the engine still cannot take."""
    if len(rules) > MAX_RULES:
        raise LimitError(rules[MAX_RULES].where, f"more than {MAX_RULES} rules of this kind (fit, "
                         "engagement or stage); one ruleset of the rules engine takes at most 4,096")
    weights = {}
    for r in rules:
        w = weight(r.cond)
        if w > MAX_WEIGHT:
            raise LimitError(r.where, f"its any/not alternatives can hold {w} ways at once; the "
                             f"rules engine takes at most {MAX_WEIGHT} per rule: split it into rules")
        weights[r.name] = w
    fields: dict[str, FieldRef] = {}
    for r in rules:
        for t in fields_of(r.cond):
            fields.setdefault(t.key, field_ref(t.key))
    tag = {"k": phase}
    if sum(weights.values()) <= FLAT_LIMIT:
        patterns = {r.name: _checked(r, {"$and": [tag, *_as_list(to_engine(r.cond))]}) for r in rules}
        top = _Node([], rules=[(r.name, weights[r.name]) for r in rules])
        sent = _sent(r.cond for r in rules)
        _check_properties(rules, {r.name: r.cond for r in rules}, 0)
        return PhasePlan(phase, tuple(fields.values()), (), patterns, top.bound() + 1, True, sent)
    return _indexed(phase, rules, weights, fields)


def _check_properties(rules: list[PlanRule], conds: dict[str, Cond | None], index_props: int) -> None:
    """One fact holds at most MAX_PROPERTIES: refuse at the rule whose fields go past it."""
    seen: set[str] = set()
    for r in rules:
        cond = conds[r.name]
        if cond is not None:
            seen.update(p for t in fields_of(cond) for p in props_of(t))
        if len(seen) + index_props > MAX_PROPERTIES:
            room = MAX_PROPERTIES - index_props
            raise LimitError(r.where, f"the rules of this phase read more than {room} different fields "
                             "(numbers and texts count apart); one fact of the rules engine holds at "
                             f"most {MAX_PROPERTIES}: read fewer fields")


def _choose(rules: list[PlanRule]) -> dict[str, _Key | None]:
    """Each rule's most selective indexable test: the one the fewest other rules share (for a
    range: the fewest other ranges on that field that overlap it). An index that would hold
    fewer than MIN_INDEX rules is dropped and its rules choose again."""
    candidates = {r.name: _keys_of(r.cond) for r in rules}
    share = Counter((k.kind, k.field_key, p) for keys in candidates.values() for k in keys
                    for p in k.points)
    cuts: dict[str, list[tuple[float, int]]] = {}
    for keys in candidates.values():
        for k in keys:
            if k.kind == "band":
                cuts.setdefault(k.field_key, []).extend(_cut(op, t) for op, t in k.bounds)
    cuts = {key: sorted(set(c)) for key, c in cuts.items()}
    spans: dict[str, list[tuple[int, int]]] = {}
    for keys in candidates.values():
        for k in keys:
            if k.kind == "band":
                spans.setdefault(k.field_key, []).append(_band_range(cuts[k.field_key], k.bounds))

    def cost(k: _Key) -> tuple[float, int]:
        if k.kind == "band":
            others = spans[k.field_key]
            if len(others) > 500:  # estimate rather than compare every pair
                return len(others) / 2, 3
            lo, hi = _band_range(cuts[k.field_key], k.bounds)
            return sum(1 for a, b in others if a <= hi and lo <= b), 3
        return sum(share[(k.kind, k.field_key, p)] for p in k.points), _RANK[k.kind]

    dropped: set[tuple[str, str]] = set()
    while True:
        chosen = {}
        for name, keys in candidates.items():
            usable = [k for k in keys if (k.kind, k.field_key) not in dropped]
            chosen[name] = min(usable, key=cost) if usable else None
        sizes = Counter((k.kind, k.field_key) for k in chosen.values() if k is not None)
        small = {index for index, n in sizes.items() if n < MIN_INDEX}
        if not small:
            return chosen
        dropped |= small


_RANK = {"value": 0, "prefix": 1, "suffix": 2}


def _indexed(phase: str, rules: list[PlanRule], weights: dict[str, int],
             fields: dict[str, FieldRef]) -> PhasePlan:
    chosen = _choose(rules)
    counter = itertools.count()
    indexes: dict[tuple[str, str], _Index] = {}
    for k in chosen.values():
        if k is None:
            continue
        index = indexes.get((k.kind, k.field_key))
        if index is None:
            index = indexes[(k.kind, k.field_key)] = _Index(next(counter), k.kind, k.field_key)
        if k.kind == "band":
            index.cuts.extend(_cut(op, t) for op, t in k.bounds)
        else:
            for p in k.points:
                index.ids.setdefault(p, len(index.ids))
    for index in indexes.values():
        if index.kind == "band":
            index.cuts = sorted(set(index.cuts))
            continue
        while DIGIT ** index.levels < len(index.ids):
            index.levels += 1
        if index.kind in ("prefix", "suffix"):
            index.lengths = tuple(sorted({len(p) for p in index.ids}))
            index.slots = max(_slot(index, p) for p in index.ids) + 1
    for index in indexes.values():
        index.seal()
    rests = {r.name: _without(r.cond, key.tests) if (key := chosen[r.name]) else r.cond for r in rules}
    _check_properties(rules, rests, sum(i.props() for i in indexes.values()))

    always = _Always()
    roots: list[_Node] = []
    for index in indexes.values():
        mine = [(name, k) for name, k in chosen.items()
                if k is not None and (k.kind, k.field_key) == (index.kind, index.field_key)]
        if index.kind == "band":
            spans: dict[tuple[int, int], list[tuple[str, int]]] = {}
            for name, k in mine:
                spans.setdefault(_band_range(index.cuts, k.bounds), []).append((name, weights[name]))
            roots.append(_band_tree(index, spans, always))
            continue
        per_slot: dict[int, dict[int, list[tuple[str, int]]]] = {}
        for name, k in mine:
            for p in k.points:
                slot = _slot(index, p) if index.kind != "value" else 0
                per_slot.setdefault(slot, {}).setdefault(index.ids[p], []).append((name, weights[name]))
        roots.extend(_point_tree(index, slot, entries, always) for slot, entries in sorted(per_slot.items()))
    scans = [(r.name, weights[r.name]) for r in rules if chosen[r.name] is None]
    groups = [always(rules=scans[i:i + FANOUT]) for i in range(0, len(scans), FANOUT)]
    top = _Node([], always.group(roots + groups))
    bound = top.bound() + 1
    if bound > MAX_STACK:
        worst = max(rules, key=lambda r: weights[r.name])
        raise LimitError(worst.where, f"the rules of this phase would need {bound} places on the "
                         f"rules engine's stack of 64; fewer alternatives per rule would fit")

    routes: dict[str, list[list[dict[str, Any]]]] = {r.name: [] for r in rules}

    def walk(node: _Node, trail: list[dict[str, Any]]) -> None:
        here = trail + node.tests
        for name, _ in node.rules:
            routes[name].append(here)
        for child in node.children:
            walk(child, here)

    walk(top, [])
    patterns: dict[str, dict[str, Any]] = {}
    aliases: dict[str, str] = {}
    for r in rules:
        rest = rests[r.name]
        tail = _as_list(to_engine(rest)) if rest is not None else []
        # one engine rule per route (each value of an `in`): they exclude each other, and an
        # `$or` of routes would spend the rule's few expressions
        for j, route in enumerate(routes[r.name]):
            name = r.name if j == 0 else f"{r.name}.{j}"
            patterns[name] = _checked(r, {"$and": [{"k": phase}, *route, *tail]})
            if j:
                aliases[name] = r.name
        if len(patterns) > MAX_RULES:
            raise LimitError(r.where, f"the rules of this kind, with one engine rule for each value "
                             f"of an `in` they are filed under, pass the {MAX_RULES} one ruleset of the "
                             "rules engine takes: use fewer values or fewer rules")
    return PhasePlan(phase, tuple(fields.values()), tuple(indexes.values()), patterns, bound, False,
                      _sent(c for c in rests.values() if c is not None), aliases)


def _checked(rule: PlanRule, pattern: dict[str, Any]) -> dict[str, Any]:
    groups = compounds(pattern)
    if groups > MAX_GROUPS:
        raise LimitError(rule.where, f"its conditions make {groups} groups (every any, ne, not_in "
                         f"and short in makes one); the rules engine takes at most {MAX_GROUPS} in one "
                         "rule: split it into rules")
    return pattern


def _sent(conds: Iterable[Cond]) -> tuple[tuple[str, str, str, frozenset[Any]], ...]:
    out: dict[str, tuple[str, str, str, frozenset[Any]]] = {}
    for cond in conds:
        for t in fields_of(cond):
            if (listed := members(t)) is not None:
                out.setdefault(listed, (listed, t.key, "m", frozenset(t.value)))
                continue
            for prop in props_of(t):
                out.setdefault(prop, (prop, t.key, prop[len(t.key) + 1:] if prop != t.key else "",
                                      frozenset()))
    return tuple(out.values())


def compounds(pattern: Any) -> int:
    """The `$and`/`$or` groups of a pattern: the engine keeps two expressions for each, at most
    31 a rule (`MAX_SEQUENCE_EXPRESSIONS`, error 113 beyond)."""
    if isinstance(pattern, dict):
        own = sum(1 for k in pattern if k in ("$and", "$or"))
        return own + sum(compounds(v) for v in pattern.values())
    if isinstance(pattern, list):
        return sum(compounds(v) for v in pattern)
    return 0


def _slot(index: _Index, text: str) -> int:
    """Where a prefix lands among a value's matching prefixes: after every shorter one."""
    if index.kind == "prefix":
        return sum(1 for n in index.lengths if n < len(text) and text[:n] in index.ids)
    return sum(1 for n in index.lengths if n < len(text) and text[-n:] in index.ids)


def _without(cond: Cond, used: tuple[Test, ...]) -> Cond | None:
    """The condition less the tests its index already decides."""
    if isinstance(cond, Test):
        return None if cond in used else cond
    if isinstance(cond, All):
        rest = tuple(c for c in cond.items if not (isinstance(c, Test) and c in used))
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else All(rest)
    return cond


def _as_list(engine: dict[str, Any]) -> list[Any]:
    return list(engine["$and"]) if "$and" in engine else [engine]


def check(phases: dict[str, list[PlanRule]]) -> list[LimitError]:
    """What validation reports: every phase shaped, or the first limit each one meets."""
    problems: list[LimitError] = []
    for phase, rules in phases.items():
        try:
            plan_phase(phase, rules)
        except LimitError as err:
            problems.append(err)
    return problems

