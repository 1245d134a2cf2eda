"""Hand-offs and escalations to the sales team's CRM: a JSON POST signed with the shared
secret, `X-Leadflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (the
scheme Stripe made familiar), and `Idempotency-Key`. The CRM answers on /v1/crm/... with the
same scheme, checked here with a window against replays."""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx

WINDOW = 300  # seconds a signed request stays good


class BadSignature(ValueError):
    pass


def signature(secret: str, body: bytes, t: int) -> str:
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, header: str | None, body: bytes, now: float | None = None,
           window: float = WINDOW) -> int:
    """The signed time, when `header` signs `body` with `secret` within the window."""
    if not header:
        raise BadSignature("missing X-Leadflow-Signature")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        raise BadSignature("X-Leadflow-Signature has no t=<unix seconds>") from None
    now = time.time() if now is None else now
    if abs(now - t) > window:
        raise BadSignature(f"signed {int(now - t)} s ago; a signature is good for {int(window)} s")
    expected = signature(secret, body, t).partition(",v1=")[2]
    if not any(hmac.compare_digest(expected, v) for v in parts.get("v1", [])):
        raise BadSignature("the signature does not match the body")
    return t


class Poster:
    """One HTTP client (kept-alive connections) for every webhook a worker posts."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.client = httpx.Client(timeout=timeout, follow_redirects=False,
                                   limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.client.post(url, content=body, headers=headers)

    def close(self) -> None:
        self.client.close()
