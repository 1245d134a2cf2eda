"""Engagement decay arithmetic: each contribution halves every `half_life` seconds."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from rules.models import Contribution

# A contribution this many half-lives old is worth under a millionth of its points: drop it.
FORGET_AFTER_HALF_LIVES = 20


def decayed(points: float, age: float, half_life: float) -> float:
    if half_life <= 0:
        return points
    return points * 0.5 ** (max(0.0, age) / half_life)


def engagement(
    contributions: Iterable[Contribution], now: float, caps: Mapping[str, float | None]
) -> tuple[float, float]:
    """(interest, intent) at `now`; a rule's `cap` bounds what that rule adds in total."""
    per_rule: dict[str, list[float]] = {}
    signal: dict[str, str] = {}
    for c in contributions:
        bucket = per_rule.setdefault(c.rule, [0.0])
        bucket[0] += decayed(c.points, now - c.at, c.half_life)
        signal[c.rule] = c.signal
    interest = intent = 0.0
    for rule, (value,) in per_rule.items():
        cap = caps.get(rule)
        if cap is not None:
            value = min(value, cap)
        if signal[rule] == "intent":
            intent += value
        else:
            interest += value
    return interest, intent


def prune(contributions: list[Contribution], now: float) -> list[Contribution]:
    return [
        c for c in contributions
        if c.half_life <= 0 or now - c.at < FORGET_AFTER_HALF_LIVES * c.half_life
    ]


def crossing_below(
    contributions: list[Contribution], caps: Mapping[str, float | None], field: str,
    threshold: float, now: float, fixed: float = 0.0, min_step: float = 3600.0,
) -> float | None:
    """A time after `now` to re-check whether score `field` has decayed below `threshold`;
    None when it is below already or never will be.

    Every capped, positive, decaying term falls no faster than the one with the shortest
    half-life H, so the score at now+d is at least score(now) * 0.5 ** (d / H): re-checking at
    the d where that bound meets the threshold is never late. The check that follows aims again
    from there, so the checks converge on the crossing. Engagement points are positive (the
    schema says so), which this bound relies on.
    """
    if field == "total":
        threshold -= fixed
        field = "engagement"
    relevant = [c for c in contributions if field == "engagement" or c.signal == field]
    interest, intent = engagement(relevant, now, caps)
    current = interest + intent
    if current < threshold:
        return None
    decaying = [c.half_life for c in relevant if c.half_life > 0]
    steady_i, steady_t = engagement([c for c in relevant if c.half_life <= 0], now, caps)
    if not decaying or steady_i + steady_t >= threshold or threshold <= 0:
        return None
    shortest = min(decaying)
    return now + max(min_step, shortest * math.log2(current / threshold))
