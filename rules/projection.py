"""A phase's fact, compiled once per policy version into generated functions.

`values(lead, event, facts, count, plain, score)` reads the fields the phase's rules read (one
dict display, no walk over field references); `body(values)` writes the fact the engine is asked
about as its JSON (rules.index_plan.PhasePlan.fact says what goes in it; this is the same,
unrolled); `key(values)`, or `key_of` straight from the sources, gives the fact a key that is
equal for two facts exactly when the engine answers them alike, and `memo` keeps the answers.

Numbers go into the fact as their *band*: the engine compares a number property only with the
constants the policy's patterns write for it (`score.total >= 60`, `inactive_for >= 14d`), so
any two values between the same two constants, or equal to the same constant, get the same
answer. A value equal to a constant is sent as it is; any other as one fixed point of its
interval, and its key is the band's code. A text its property is only compared with for
equality keys as itself when it is one of those constants, else as one mark. Facts then repeat
(a lead a day older is in the same band of `inactive_for`; a lead's own company domain says
nothing to the patterns), so the memo answers most matches without JSON or the engine, while
every answer stays what the value itself would get. Values the bands cannot speak for exactly
(past 2**53, not finite, booleans, a property compared with a boolean) go as they are.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Collection, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rules.engine_json import EXACT_INT, fact_json, plain_json
from rules.index_plan import PhasePlan

_COMPARED = ("$gt", "$gte", "$lt", "$lte", "$neq", "$mt")

Values = Callable[[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any],
                   dict[str, Any]], dict[str, Any]]
Body = Callable[[dict[str, Any]], str]
Key = Callable[[dict[str, Any]], Hashable]
KeyOf = Callable[[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any],
                  dict[str, Any]], Hashable]


@dataclass(frozen=True)
class Projection:
    values: Values
    body: Body  # the fact as engine JSON
    key: Key  # what tells two facts apart, cheaper than their text (see compile_projection)
    key_of: KeyOf  # the key from the sources `values` reads
    # what the engine answered per key: most facts repeat (see the module's docstring)
    memo: dict[Hashable, list[str]] = field(default_factory=dict)


def _dig(node: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _written(pattern: Any) -> Iterator[tuple[str, str, Any]]:
    """(operator, property, constant) for every comparison in a pattern (`eq` for a plain
    property: value; presence tests compare with nothing and are left out)."""
    if isinstance(pattern, list):
        for item in pattern:
            yield from _written(item)
        return
    if not isinstance(pattern, dict):
        return
    for key, value in pattern.items():
        if key in ("$and", "$or"):
            yield from _written(value)
        elif key in _COMPARED:
            yield from ((key, prop, constant) for prop, constant in value.items())
        elif not key.startswith("$"):
            yield "eq", key, value


class Bands:
    """The intervals the constants compared with one number property cut the line into."""

    def __init__(self, constants: list[float]) -> None:
        self.cuts = sorted(set(constants))
        reps: list[float | None] = []
        below = self.cuts[0] - 1.0
        reps.append(below if below < self.cuts[0] else None)
        for lo, hi in zip(self.cuts, self.cuts[1:], strict=False):
            mid = lo + (hi - lo) / 2
            reps.append(mid if lo < mid < hi else None)  # adjacent doubles: nothing lies between
        above = self.cuts[-1] + 1.0
        reps.append(above if above > self.cuts[-1] else None)
        self.reps = reps


def bands_of(plan: PhasePlan) -> dict[str, Bands]:
    """Per number property of the fact, its bands; a property compared with anything but
    plain numbers within 2**53 has none (its values are sent as they are)."""
    written: dict[str, list[Any]] = {}
    for pattern in plan.patterns.values():
        for op, prop, constant in _written(pattern):
            if op != "$mt":
                written.setdefault(prop, []).append(constant)
    out: dict[str, Bands] = {}
    for prop, _, kind, _ in plan.sent:
        constants = written.get(prop)
        if kind != "n" or not constants or not all(
                c.__class__ in (int, float) and -EXACT_INT <= c <= EXACT_INT for c in constants):
            continue
        out[prop] = Bands([float(c) for c in constants])
    return out


def texts_of(plan: PhasePlan) -> dict[str, frozenset[str]]:
    """Per text property of the fact that the patterns only compare for equality, the texts they
    compare it with: any other text gets the answer every other text gets (a property matched
    by a prefix or suffix has none: its texts are keys as they are)."""
    written: dict[str, list[Any]] = {}
    matched: set[str] = set()
    for pattern in plan.patterns.values():
        for op, prop, constant in _written(pattern):
            if op == "$mt":
                matched.add(prop)
            elif op in ("eq", "$neq"):
                written.setdefault(prop, []).append(constant)
    return {prop: frozenset(written[prop]) for prop, _, kind, _ in plan.sent
            if kind == "s" and prop in written and prop not in matched
            and all(isinstance(c, str) for c in written[prop])}


SOURCES = ("lead", "event", "facts", "count", "plain", "score")
class _Flag:
    """A boolean's place in a key: equal to nothing but itself, and itself again when a key
    crosses to another process (it pickles as the module's own name)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return self.name


_TRUE, _FALSE = _Flag("_TRUE"), _Flag("_FALSE")
_OTHER = _Flag("_OTHER")  # a text no pattern compares its property with
UNROLLED = 4  # bands with up to this many cuts are found by comparisons, more by bisection


def _key_lines(plan: PhasePlan, bands: dict[str, Bands], texts: dict[str, frozenset[str]],
               read: Callable[[str], str]) -> list[str]:
    """The body of a function returning the fact's key: one entry per property, equal for two
    facts exactly when the engine gives them the same answer. A text is itself, or the same
    mark for every text its property is never compared with (`texts_of`); a member or
    presence 1; absent None; a number in bands the code of its band (2i: between cut i-1 and
    cut i; 2i+1: equal to cut i), since the band is all the engine compares; any other number
    keeps its type beside it, but floats (True, 1 and 1.0 are equal in Python, not in the
    engine's JSON; 0.0 and -0.0 compare alike everywhere)."""
    lines: list[str] = []
    add = lines.append
    for n, (prop, key, kind, _) in enumerate(plan.sent):
        add(f"    v = {read(key)}")
        if kind == "s" and prop in texts:
            add(f"    k{n} = (v if v in _texts{n} else _OTHER) if isinstance(v, str) else None")
        elif kind == "s":
            add(f"    k{n} = v if isinstance(v, str) else None")
        elif kind == "m":
            add(f"    try:\n        k{n} = 1 if v in _listed{n} else None")
            add(f"    except TypeError:  # an object or list is in no list of scalars\n        k{n} = None")
        elif kind == "":
            add(f"    k{n} = None if v is None else 1")
        else:
            add("    c = v.__class__")
            other = [f"    elif c is bool:\n        k{n} = _T if v else _F",
                     f"    elif isinstance(v, (int, float)):\n        k{n} = (c, v)",
                     f"    else:\n        k{n} = None"]
            band = bands.get(prop)
            if band is None:
                add(f"    if c is float:\n        k{n} = v")
                lines += other
                continue
            add("    if (c is float and -_inf < v < _inf) or (c is int and -_EI <= v <= _EI):")
            cuts = band.cuts
            if len(cuts) > UNROLLED:
                add(f"        i = _bisect(_cuts{n}, v)")
                add(f"        k{n} = 2 * i + 1 if i < {len(cuts)} and _cuts{n}[i] == v else 2 * i")
            else:
                for i, cut in enumerate(cuts):
                    word = "if" if i == 0 else "elif"
                    add(f"        {word} v < {cut!r}:\n            k{n} = {2 * i}")
                    add(f"        elif v == {cut!r}:\n            k{n} = {2 * i + 1}")
                add(f"        else:\n            k{n} = {2 * len(cuts)}")
            lines += other
    # an index's part: the entries it adds to the fact (rules.index_plan._Index.fill), all that
    # the engine reads of the value it indexes
    parts = [f"k{n}" for n in range(len(plan.sent))]
    for i, index in enumerate(plan.indexes):
        add(f"    v = {read(index.field_key)}")
        add(f"    if v is None:\n        i{i} = None\n    else:")
        add(f"        i{i} = {{}}\n        _indexes[{i}].fill(i{i}, v)\n        i{i} = tuple(i{i}.items())")
        parts.append(f"i{i}")
    add(f"    return ({''.join(f'{part}, ' for part in parts)})")
    return lines


def compile_projection(plan: PhasePlan, constants: Collection[float]) -> Projection:
    """The phase's builders, as generated code (tests/unit/test_compiled_evaluator.py holds
    what they decide to what the reference evaluator decides through PhasePlan.fact)."""
    namespace: dict[str, Any] = {"_dig": _dig, "_indexes": plan.indexes, "_bisect": bisect.bisect_left,
                                 "_plain": plain_json, "_exact": fact_json, "_constants": constants,
                                 "_inf": math.inf, "_EI": EXACT_INT}
    reads_of = []
    for f in plan.fields:
        first = f"{f.source}.get({f.path[0]!r})"
        reads_of.append(first if len(f.path) == 1 else f"_dig({first}, {f.path[1:]!r})")
    reads = [f"{f.key!r}: {read}" for f, read in zip(plan.fields, reads_of, strict=True)]
    code = [f"def values({', '.join(SOURCES)}):", f"    return {{{', '.join(reads)}}}", ""]

    bands = bands_of(plan)
    for n, (prop, _, _, listed) in enumerate(plan.sent):
        namespace[f"_listed{n}"] = listed
        if prop in bands:
            namespace[f"_cuts{n}"], namespace[f"_reps{n}"] = bands[prop].cuts, bands[prop].reps

    def each(emit: Callable[[int, str], list[str]], read: Callable[[str], str]) -> list[str]:
        """Per property sent, the lines reading its value `v` and the `emit` lines using it."""
        out = []
        for n, (prop, key, kind, _) in enumerate(plan.sent):
            out += [f"    v = {read(key)}", "    if v is not None:"]
            if kind == "n":
                out.append("        if isinstance(v, (int, float)):")
                if prop in bands:  # the band's point
                    out += ["            c = v.__class__",
                            "            if (c is float and -_inf < v < _inf)"
                            " or (c is int and -_EI <= v <= _EI):",
                            f"                i = _bisect(_cuts{n}, v)",
                            f"                if i == {len(bands[prop].cuts)} or _cuts{n}[i] != v:",
                            f"                    r = _reps{n}[i]",
                            "                    if r is not None:",
                            "                        v = r"]
                out += ["            " + line for line in emit(n, "n")]
            elif kind == "s":
                out += ["        if isinstance(v, str):"] + ["            " + line for line in emit(n, "s")]
            elif kind == "m":
                out += ["        try:", f"            if v in _listed{n}:"]
                out += ["                " + line for line in emit(n, "m")]
                out += ["        except TypeError:  # an object or list is in no list of scalars",
                        "            pass"]
            else:
                out += ["        " + line for line in emit(n, "")]
        return out

    def fact_lines(n: int, kind: str) -> list[str]:
        prop = plan.sent[n][0]
        if kind != "n":
            return [f"fact[{prop!r}] = {'v' if kind == 's' else '1'}"]
        # what rules.engine_json.fact_json looks for: a number it must write the exact way
        return [f"fact[{prop!r}] = v",
                "if isinstance(v, float):",
                "    if not (1e-4 <= abs(v) < 1e16) and v != 0.0:",
                "        exact = True",
                "elif not -_EI <= v <= _EI:",
                "    exact = True"]

    code += ["def body(values):", "    exact = False", f"    fact = {{'k': {plan.phase!r}}}"]
    code += each(fact_lines, lambda key: f"values[{key!r}]")
    if plan.indexes:  # their entries are small integers
        code += ["    for index in _indexes:",
                 "        v = values[index.field_key]",
                 "        if v is not None:",
                 "            index.fill(fact, v)"]
    code += ["    return _exact(fact, _constants) if exact else _plain(fact)", ""]

    local = {f.key: f"f{i}" for i, f in enumerate(plan.fields)}
    reads_at = [f"    {local[f.key]} = {read}" for f, read in zip(plan.fields, reads_of, strict=True)]
    namespace["_T"], namespace["_F"], namespace["_OTHER"] = _TRUE, _FALSE, _OTHER
    texts = texts_of(plan)
    for n, (prop, _, _, _) in enumerate(plan.sent):
        if prop in texts:
            namespace[f"_texts{n}"] = texts[prop]
    code += ["def key(values):", *_key_lines(plan, bands, texts, lambda key: f"values[{key!r}]"), ""]
    # the key straight from the sources, without the values' dict (what the chain asks)
    code += [f"def key_of({', '.join(SOURCES)}):", *reads_at,
             *_key_lines(plan, bands, texts, local.__getitem__)]
    exec("\n".join(code) + "\n", namespace)  # noqa: S102 (our own generated code)
    return Projection(namespace["values"], namespace["body"], namespace["key"], namespace["key_of"])
