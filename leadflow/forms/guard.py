"""The bot checks a form's POST meets before anything else (no third-party CAPTCHA): the
honeypot field filled, a submit faster than the form's min_fill_seconds after the page was
loaded, or more submits from one client address than the rate allows. A refused submit is
answered as a good one would be (the caller's job): a bot learns nothing to adapt to."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Literal

from leadflow.api.limits import Limiter
from leadflow.forms.model import Form

Refusal = Literal["honeypot", "too_fast", "rate"]
# Per client address, all forms together: bursts of 30 (a stand's kiosk, an office behind one
# address, a person fixing typos), then one every 2 seconds: a flood from one address is held
# to 30 a minute, and no crowd behind one address waits.
RATE_PER_SECOND = 0.5
BURST = 30


class Guard:
    def __init__(self, limiter: Limiter | None = None) -> None:
        self.limiter = limiter or Limiter(RATE_PER_SECOND, BURST)

    def refuse(self, form: Form, posted: Mapping[str, str], address: str,
               now: float | None = None) -> Refusal | None:
        """Why this submit is a bot's, or None. Every submit takes from the address's rate, a
        bot's too, so a flood is bounded however it is made."""
        now = time.time() if now is None else now
        within_rate = self.limiter.allow(address)
        if posted.get(form.honeypot, "").strip():
            return "honeypot"
        if too_fast(form, posted.get("lf_started", ""), now):
            return "too_fast"
        if not within_rate:
            return "rate"
        return None


def too_fast(form: Form, started: str, now: float) -> bool:
    """`started`: epoch milliseconds when the page was loaded (lf_started: the hosted page sets it,
    the tracking script on a site's own page). Without it, or with one that is no number or in the
    future (a browser's clock ahead of ours), the fill time is not judged: a form posted from a
    page with no script has none, and the honeypot and the rate still hold."""
    try:
        loaded = int(started.strip()) / 1000.0
    except ValueError:
        return False
    elapsed = now - loaded
    return 0.0 <= elapsed < form.min_fill_seconds
