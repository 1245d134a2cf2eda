"""Rates for the doors that need no key (/v1/collect, /f/{form}): a token bucket per key (a
visitor, an address), kept in this process. Each API process limits on its own; behind N of
them a sender gets N times the rate, which bounds a flood all the same."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class Limiter:
    """At most `rate` a second per key, in bursts of up to `burst`. The `keys` most recently seen
    are remembered; a key forgotten starts again with a full bucket, so a flood of new keys costs
    memory no more than `keys` buckets."""

    def __init__(self, rate: float, burst: float, keys: int = 100_000) -> None:
        self.rate, self.burst, self.keys = rate, burst, keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key: (tokens, at)
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        """Take one token for `key`: False when it has none left."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
            while len(self._buckets) > self.keys:
                self._buckets.popitem(last=False)
            return allowed
