"""JSON in the dialect durable-rules reads, with every number compared exactly.

The engine's number reader (`getNumber` in json.c) takes an exponent only after a decimal
point: Python's `1e+16` and `1e-05` are refused (error 204, "Could not assert fact"), while
`1.0e+16` and `1.0e-05` are read exactly (glibc's strtod rounds correctly, and Python's repr is
the shortest text that round-trips). Integers are read with atoll into 64 bits and compared with
doubles after conversion, so an integer beyond 2**53 is sent as the nearest double, nudged off
any policy constant it does not equal, so that every comparison with a constant keeps its
answer. NaN and infinities are not JSON numbers; the intake refuses them (`rules.models`).

Facts (flat: one property per field, rules.index_plan) go through `fact_json`: the C encoder does
the common case, and only a fact holding a number that Python would write with an exponent, or
a long integer, takes the exact path. Ruleset definitions go through `dumps`, always exact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection
from typing import Any

EXACT_INT = 2**53
MAX_DOUBLE = 1.7976931348623157e308

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _made_once() -> Callable[[dict[str, Any]], str]:
    """The C encoder `JSONEncoder.encode` makes afresh on every call (a good share of the
    call), made once; where the interpreter has none, or it writes otherwise, the encoder."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _encoder.encode
    try:
        c = make(None, None, json.encoder.encode_basestring, None, ":", ",", False, False, False)
        probe = {"k": "stage", "a#s": "vp é", "b#n": 12.5, "c": 1, "d#n": True, "e#n": 3}
        if "".join(c(probe, 0)) != _encoder.encode(probe):
            return _encoder.encode
    except Exception:  # another signature: the plain encoder
        return _encoder.encode
    return lambda fact: "".join(c(fact, 0))


# engine JSON for a flat fact known to hold no number that needs the exact way
plain_json: Callable[[dict[str, Any]], str] = _made_once()
_string = json.JSONEncoder(ensure_ascii=False).encode


class NotANumber(ValueError):
    """NaN or an infinity reached the engine: the intake should have refused it."""


def number(value: int | float, constants: Collection[float] = ()) -> str:
    """The engine text for one number: exact for floats; for integers past 2**53, the nearest
    double that compares with every constant as the integer does."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if -EXACT_INT <= value <= EXACT_INT:
            return str(value)
        try:
            near = float(value)
        except OverflowError:
            near = math.copysign(MAX_DOUBLE, value)
        if near in constants and near != value:
            near = math.nextafter(near, math.inf if value > near else -math.inf)
        return _float(near)
    return _float(value)


def _float(value: float) -> str:
    if not math.isfinite(value):
        raise NotANumber(f"{value!r} is not a number the rules can compare")
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        return f"{mantissa}.0e{exponent}"
    return text


def fact_json(fact: dict[str, Any], constants: Collection[float] = ()) -> str:
    """Engine JSON for a flat fact."""
    for value in fact.values():
        if isinstance(value, float):
            size = abs(value)
            if not (1e-4 <= size < 1e16) and value != 0.0:
                return _exact(fact, constants)  # also NaN and infinities: _exact says which
        elif isinstance(value, int) and not -EXACT_INT <= value <= EXACT_INT:
            return _exact(fact, constants)
    return plain_json(fact)


def dumps(value: Any, constants: Collection[float] = ()) -> str:
    """Engine JSON for anything (a ruleset definition), always the exact way."""
    return _exact(value, constants)


def _exact(value: Any, constants: Collection[float]) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{_string(str(k))}:{_exact(v, constants)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_exact(v, constants) for v in value) + "]"
    if isinstance(value, str):
        return _string(value)
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return number(value, constants)
    raise TypeError(f"cannot send {type(value).__name__} to the rules engine")
