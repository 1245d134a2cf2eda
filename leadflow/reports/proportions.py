"""Proportions of leads and how sure one can be of them: a rate with its Wilson score interval,
and the two-proportion z-test that tells two rates apart. Pure arithmetic (the standard library's
NormalDist), no database.

Wilson rather than the textbook `p ± z·sqrt(p(1-p)/n)`: that interval collapses to nothing at 0
or n successes and spills below 0 or above 1 for the small counts an A/B test starts with."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

CONFIDENCE = 0.95
# the two-proportion z-test leans on the normal approximation: each group should expect at least
# this many successes and as many failures at the pooled rate
MIN_EXPECTED = 5


def z_of(confidence: float) -> float:
    """The two-sided critical value: 1.96 for 95%."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


@dataclass(frozen=True)
class Rate:
    """`count` of `of` leads."""

    count: int
    of: int

    @property
    def value(self) -> float | None:
        return self.count / self.of if self.of else None

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
        return wilson(self.count, self.of, confidence) if self.of else None

    def as_dict(self, confidence: float = CONFIDENCE) -> dict[str, Any]:
        low, high = self.interval(confidence) or (None, None)
        return {"count": self.count, "of": self.of, "rate": self.value, "low": low, "high": high}


def wilson(count: int, of: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of `count` successes in `of` trials (none: all of [0, 1])."""
    if not of:
        return 0.0, 1.0
    z = z_of(confidence)
    p = count / of
    middle = (p + z * z / (2 * of)) / (1 + z * z / of)
    half = z / (1 + z * z / of) * math.sqrt(p * (1 - p) / of + z * z / (4 * of * of))
    # exact at the ends, where the arithmetic leaves a hair off 0 or 1
    return (0.0 if count == 0 else max(0.0, middle - half)), (1.0 if count == of else min(1.0, middle + half))


def testable(a: Rate, b: Rate) -> bool:
    """Enough leads on both sides for the z-test's normal approximation (MIN_EXPECTED)."""
    if not a.of or not b.of:
        return False
    pooled = (a.count + b.count) / (a.of + b.of)
    return all(n * pooled >= MIN_EXPECTED and n * (1 - pooled) >= MIN_EXPECTED for n in (a.of, b.of))


def p_value(a: Rate, b: Rate) -> float:
    """Two-sided p-value of the pooled two-proportion z-test that `a` and `b` are one rate (1.0
    when either has no trials)."""
    if not a.of or not b.of:
        return 1.0
    pooled = (a.count + b.count) / (a.of + b.of)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / a.of + 1 / b.of))
    if spread == 0:  # both all successes or all failures: nothing tells them apart
        return 1.0
    z = (a.count / a.of - b.count / b.of) / spread
    return math.erfc(abs(z) / math.sqrt(2))  # 2 * (1 - Phi(|z|)), without its rounding to 0
