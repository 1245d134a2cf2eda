"""The links a nurture e-mail carries: one-click unsubscribe, the open pixel and tracked
redirects. Each holds a signed token: base64url JSON, a dot, and 128 bits of HMAC-SHA256 under a
key derived from LEADFLOW_SECRET for that kind of link. Nobody can guess another lead's link,
turn a click link into an unsubscribe, or make the redirect send people to a site of their
choosing. (itsdangerous did the same at four times the cost: it tries zlib on every token, and
an e-mail carries five or six.)"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["unsubscribe", "open", "click"]
PATHS: dict[Kind, str] = {"unsubscribe": "/u/", "open": "/t/open/", "click": "/t/click/"}


# How long, and how often, an open or a click counts (issue 22). Constants until the settings
# carry them; the variables they would be: LEADFLOW_LINK_COUNT_DAYS,
# LEADFLOW_LINK_EVENTS_PER_TOKEN_HOUR, LEADFLOW_LINK_EVENTS_PER_ADDRESS_MINUTE.
COUNT_FOR_SECONDS = 90 * 86400.0  # 90 days from signing: nurture mail read later is no interest
TOKEN_PER_HOUR = 5  # per token (one open pixel, one tracked link of one e-mail), per clock hour
ADDRESS_PER_MINUTE = 30  # per client address, all tokens together, per clock minute


@dataclass(frozen=True)
class Bounds:
    count_for: float = COUNT_FOR_SECONDS
    per_token_hour: int = TOKEN_PER_HOUR
    per_address_minute: int = ADDRESS_PER_MINUTE

    def too_old(self, data: dict[str, Any], now: float) -> str | None:
        """Why a fetch of this token counts nothing however often it comes, or None."""
        signed = signed_at(data)
        if signed is None:
            return "the link carries no signing time"
        if now - signed > self.count_for:
            return f"the link was signed {int((now - signed) // 86400)} days ago (counts for " \
                   f"{self.count_for / 86400:g})"
        return None


def signed_at(data: dict[str, Any]) -> float | None:
    """When the token was signed (its `t`), or None when it does not say."""
    t = data.get("t")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
        return None
    return float(t)


def identity(kind: Kind, data: dict[str, Any]) -> str:
    """The same for every spelling of one token (its base64 with or without padding): what
    the per-token bound counts."""
    what = _COMPACT.encode([kind, data.get("l"), data.get("d"), data.get("c"), data.get("t"), data.get("u")])
    return hashlib.sha256(what.encode()).hexdigest()[:32]


class BadLink(ValueError):
    """A token that is not ours, was changed, or is for another kind of link."""


def delivery_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def bounce_id(key: str) -> str:
    """The id of the `email_bounce` event a hard bounce of delivery `key` sends its lead, whether
    the SMTP exchange or a returned report (leadflow.delivery.inbound) said it: the same on every
    retry and replay, so a delivery bounced both ways is one event."""
    return f"bounce-{delivery_digest(key)}"


@dataclass(frozen=True)
class Mail:
    """What a link knows of the e-mail it is in."""

    lead: str
    delivery: str  # delivery_digest of the delivery key
    content: str
    sent: int  # unix seconds the e-mail went out: when its links were signed (`t`)
    address: str = ""  # sha256 of the address (unsubscribe links only)


class Links:
    def __init__(self, secret: str, public_url: str, old: Sequence[str] = ()) -> None:
        """Links signed with `secret`; read with it or any of `old` (the secrets before a rotation:
        an unsubscribe link sent last year must still work)."""
        self.base = public_url.rstrip("/")
        self._keys = _kind_keys(secret)
        self._old = [_kind_keys(o) for o in old if o != secret]

    def unsubscribe(self, mail: Mail) -> str:
        return self._url("unsubscribe", {"l": mail.lead, "a": mail.address, "d": mail.delivery,
                                         "c": mail.content, "t": mail.sent})

    def open_pixel(self, mail: Mail) -> str:
        return self._url("open", {"l": mail.lead, "d": mail.delivery, "c": mail.content, "t": mail.sent})

    def click(self, mail: Mail, target: str) -> str:
        return self._url("click", {"l": mail.lead, "d": mail.delivery, "c": mail.content, "t": mail.sent,
                                   "u": target})

    def read(self, kind: Kind, token: str) -> dict[str, Any]:
        body, _, mac = token.partition(".")
        try:
            given, signed = _b64decode(mac), body.encode("ascii")
            good = hmac.compare_digest(given, self._mac(kind, signed)) or any(
                hmac.compare_digest(given, hmac.digest(keys[kind], signed, "sha256")[:16])
                for keys in self._old)
            data = json.loads(_b64decode(body)) if good else None
        except (ValueError, UnicodeError):
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("l"), str):
            raise BadLink(f"this {kind} link is not valid")
        return data

    def _url(self, kind: Kind, data: dict[str, Any]) -> str:
        body = _b64encode(_COMPACT.encode(data).encode())
        return f"{self.base}{PATHS[kind]}{body}.{_b64encode(self._mac(kind, body.encode('ascii')))}"

    def _mac(self, kind: Kind, body: bytes) -> bytes:
        return hmac.digest(self._keys[kind], body, "sha256")[:16]


def _kind_keys(secret: str) -> dict[str, bytes]:
    """One key per kind of link, so an open pixel's token is never a valid unsubscribe."""
    return {kind: hmac.new(secret.encode(), f"leadflow.{kind}".encode(), hashlib.sha256).digest()
            for kind in PATHS}


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # one encoder: json.dumps makes one per call
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64encode(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
