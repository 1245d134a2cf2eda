"""Engagement decay arithmetic: each contribution halves every `half_life` seconds."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from rules.models import Contribution

# Scores as rules read them and Decisions carry them: rounded to this many decimals.
SCORE_DIGITS = 2


def decayed(points: float, age: float, half_life: float) -> float:
    if half_life <= 0:
        return points
    factor: float = 0.5 ** (max(0.0, age) / half_life)
    return points * factor


def engagement(
    contributions: Iterable[Contribution], now: float, caps: Mapping[str, float | None]
) -> tuple[float, float]:
    """(interest, intent) at `now`; a rule's `cap` bounds what that rule adds in total."""
    listed = list(contributions)
    return _summed(listed, [decayed(c.points, now - c.at, c.half_life) for c in listed], caps)


def _summed(contributions: list[Contribution], values: list[float], caps: Mapping[str, float | None]
            ) -> tuple[float, float]:
    """(interest, intent) of contributions worth `values` now: each rule's total capped (a rule
    that subtracts, at minus its cap), each signal at least 0."""
    if len({c.rule for c in contributions}) == len(contributions):
        # one contribution per rule, as compacting leaves them: the same sums, in the same order
        interest = intent = 0.0
        for c, value in zip(contributions, values, strict=True):
            cap = caps.get(c.rule)
            if cap is not None:
                value = _capped(value, cap)
            if c.signal == "intent":
                intent += value
            else:
                interest += value
        return max(0.0, interest), max(0.0, intent)
    per_rule: dict[str, list[float]] = {}
    signal: dict[str, str] = {}
    for c, value in zip(contributions, values, strict=True):
        bucket = per_rule.setdefault(c.rule, [0.0])
        bucket[0] += value
        signal[c.rule] = c.signal
    interest = intent = 0.0
    for rule, (total,) in per_rule.items():
        cap = caps.get(rule)
        if cap is not None:
            total = _capped(total, cap)
        if signal[rule] == "intent":
            intent += total
        else:
            interest += total
    return max(0.0, interest), max(0.0, intent)


def _capped(total: float, cap: float) -> float:
    """A rule's total within its cap: up to it, or down to minus it for a rule that subtracts."""
    return min(total, cap) if total >= 0 else max(total, -cap)


def compact(contributions: list[Contribution], now: float) -> list[Contribution]:
    """Merge each rule's past contributions into one, exactly.

    For contributions with the same half-life h, sum(p_i * 0.5**((t - a_i)/h)) equals
    P * 0.5**((t - a)/h) with a = max(a_i) and P = sum(p_i * 0.5**((a - a_i)/h)), for every
    t >= a. Evaluations only move forward, so merging those with a_i <= now changes no score
    and keeps a months-long lead at about one record per engagement rule. Contributions from
    the future (clock skew) wait until they are past; dust below 1e-6 points is dropped.
    """
    return compacted(contributions, now)[0]


def compacted(contributions: list[Contribution], now: float) -> tuple[list[Contribution], list[float]]:
    """`compact`, and what each contribution kept is worth at `now` (each decayed once)."""
    kinds: set[tuple[str, float]] = set()
    for c in contributions:
        kind = (c.rule, c.half_life)
        if c.at > now or kind in kinds:
            break
        kinds.add(kind)
    else:  # none to merge, none from the future: as the groups below would leave them
        kept: list[Contribution] = []
        values: list[float] = []
        for c in contributions:
            value = decayed(c.points, now - c.at, c.half_life)
            if abs(value) >= 1e-6:
                kept.append(c)
                values.append(value)
        return kept, values
    groups: dict[tuple[str, float], list[Contribution]] = {}
    out: list[Contribution] = []
    worth: list[float] = []
    for c in contributions:
        if c.at > now:
            out.append(c)
            worth.append(decayed(c.points, now - c.at, c.half_life))
        else:
            groups.setdefault((c.rule, c.half_life), []).append(c)
    for (rule, half_life), group in groups.items():
        if len(group) == 1:
            merged = group[0]
        else:
            at = max(c.at for c in group)
            points = sum(decayed(c.points, at - c.at, half_life) for c in group)
            merged = Contribution(rule=rule, at=at, points=points, half_life=half_life,
                                  signal=group[0].signal)
        value = decayed(merged.points, now - merged.at, merged.half_life)
        if abs(value) >= 1e-6:
            out.append(merged)
            worth.append(value)
    return out, worth


class Levels:
    """A lead's engagement at `now`, and when a score will have decayed below a level: each sum
    made once per evaluation, however many rules watch it."""

    def __init__(self, contributions: list[Contribution], caps: Mapping[str, float | None],
                 now: float, worth: list[float] | None = None) -> None:
        """`worth`: what each contribution is worth at `now`, when known (see `compacted`)."""
        self.contributions = contributions
        self.caps = caps
        self.now = now
        if worth is None:
            worth = [decayed(c.points, now - c.at, c.half_life) for c in contributions]
        self.interest, self.intent = _summed(contributions, worth, caps)
        self._fields: dict[str, tuple[float, float, float | None]] = {}

    def _field(self, field: str) -> tuple[float, float, float | None]:
        """(the score now, its part that never decays, the shortest half-life in it)."""
        known = self._fields.get(field)
        if known is not None:
            return known
        if field == "engagement":
            relevant = self.contributions
            interest, intent = self.interest, self.intent
        else:
            relevant = [c for c in self.contributions if c.signal == field]
            interest, intent = engagement(relevant, self.now, self.caps)
        decaying = [c.half_life for c in relevant if c.half_life > 0]
        steady = 0.0  # what engagement() of no contribution sums to
        if len(decaying) < len(relevant):
            steady_i, steady_t = engagement([c for c in relevant if c.half_life <= 0], self.now, self.caps)
            steady = steady_i + steady_t
        known = self._fields[field] = (interest + intent, steady, min(decaying) if decaying else None)
        return known

    def _parts(self, field: str) -> tuple[float, float, float, float | None]:
        """Where some rule subtracts: the score's parts now, per rule capped: what positive rules
        add that decays, what they add that never does, what negative rules take (all of it, at
        its value now: it only shrinks towards 0), and the shortest half-life of the first."""
        relevant = [c for c in self.contributions if field == "engagement" or c.signal == field]
        totals: dict[str, float] = {}
        decays: dict[str, float] = {}
        for c in relevant:
            totals[c.rule] = totals.get(c.rule, 0.0) + decayed(c.points, self.now - c.at, c.half_life)
            if c.half_life > 0:
                decays[c.rule] = min(decays.get(c.rule, math.inf), c.half_life)
        fading = lasting = taking = 0.0
        for rule, total in totals.items():
            cap = self.caps.get(rule)
            total = _capped(total, cap) if cap is not None else total
            if total < 0:
                taking += total
            elif rule in decays:
                fading += total
            else:
                lasting += total
        half_lives = [decays[r] for r, t in totals.items() if r in decays and t > 0]
        return fading, lasting, taking, min(half_lives) if half_lives else None

    def crossing_below(self, field: str, threshold: float, fixed: float = 0.0,
                       min_step: float = 3600.0) -> float | None:
        """A time after `now` to re-check whether score `field` has decayed below `threshold`;
        None when it is below already or never will be.

        Every capped, positive, decaying term falls no faster than the one with the shortest
        half-life H, so the score at now+d is at least score(now) * 0.5 ** (d / H): re-checking
        at the d where that bound meets the threshold is never late. The check that follows aims
        again from there, so the checks converge on the crossing.

        A rule that subtracts only gives back over time: where one has, the bound is what the
        positive decaying part F falls to, plus what never decays, plus all that negative rules
        take now (N), and the check is due where F * 0.5 ** (d / H) + lasting + N meets the
        threshold (each signal floored at 0 only raises the score above that).
        """
        if field == "total":
            threshold -= fixed
            field = "engagement"
        current, steady, shortest = self._field(field)
        if current < threshold:
            return None
        if any(c.points < 0 for c in self.contributions):
            fading, lasting, taking, shortest = self._parts(field)
            rest = threshold - lasting - taking
            if shortest is None or rest <= 0 or threshold <= 0:
                return None  # what could fall never takes the score below the threshold
            if fading <= rest:  # at the bound already: look again soon
                return self.now + min_step
            return self.now + max(min_step, shortest * math.log2(fading / rest))
        if shortest is None or steady >= threshold or threshold <= 0:
            return None
        return self.now + max(min_step, shortest * math.log2(current / threshold))
