"""Failed logins to the pages, counted per client address: after a few within a window, that
address waits before it may try again. Per API process; a key is 16 characters or more, so the
bound is there to make guessing loud and slow, not to be the only defence."""

from __future__ import annotations

import math
import threading
import time
from collections import deque

FAILURES = 5  # failed logins allowed from one address ...
WINDOW = 15 * 60.0  # ... within this many seconds


class LoginGuard:
    def __init__(self, failures: int = FAILURES, window: float = WINDOW) -> None:
        self.failures = failures
        self.window = window
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait(self, client: str, now: float | None = None) -> int:
        """Seconds `client` must wait before trying again (0: it may try now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._recent(client, now)
            if len(times) < self.failures:
                return 0
            return max(1, math.ceil(times[0] + self.window - now))

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._recent(client, now).append(now)
            if len(self._seen) > 10_000:  # forget the addresses whose failures have all aged out
                for other in [c for c, t in self._seen.items() if not t or t[-1] < now - self.window]:
                    del self._seen[other]

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._seen.setdefault(client, deque())
        while times and times[0] < now - self.window:
            times.popleft()
        return times


LOGINS = LoginGuard()
