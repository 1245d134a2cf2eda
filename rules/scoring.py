"""Engagement decay arithmetic: each contribution halves every `half_life` seconds."""

from __future__ import annotations

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
    threshold: float, now: float, fixed: float, horizon: float,
) -> float | None:
    """Earliest time after `now` at which score `field` falls below `threshold` by decay alone
    (None if it is already below, or stays above within `horizon`). Decay only ever lowers
    positive scores, so a bisection over time finds the crossing."""

    def value(at: float) -> float:
        interest, intent = engagement(contributions, at, caps)
        return {"interest": interest, "intent": intent, "engagement": interest + intent,
                "total": interest + intent + fixed}[field]

    if value(now) < threshold:
        return None
    lo, hi = now, now + horizon
    if value(hi) >= threshold:
        return None
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if value(mid) >= threshold else (lo, mid)
    return hi
