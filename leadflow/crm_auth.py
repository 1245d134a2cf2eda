"""The CRM's answers to hand-offs, signed: `X-Leadflow-Signature: t=<unix seconds>,v1=<hex
HMAC-SHA256 of "<t>.<METHOD>.<path>.<body>">` under LEADFLOW_CRM_SECRET.

Inbound answers are signed differently from the hand-off webhooks leadflow sends (those sign
"<t>.<body>" under LEADFLOW_WEBHOOK_SECRET): with one key and one scheme, an outgoing
`handoff.created` and its header posted back to /v1/crm/tasks/<id>/accept verified as an answer.
The method and path bind a signature to the one task and answer it was made for. The header is
read strictly (one t, one v1, no spaces, no leading zeros), so a captured header cannot be made
to verify again by writing it differently, and a replay is refused across every API process by
the (t, mac) pair kept in the shared database."""

from __future__ import annotations

import hmac
import re
import time

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from leadflow.db.database import Database
from leadflow.db.schema import crm_replays

WINDOW = 300  # seconds a signed answer stays good
_HEADER = re.compile(r"t=([1-9][0-9]{0,11}),v1=([0-9a-f]{64})")


class BadSignature(ValueError):
    pass


def sign(secret: str, method: str, path: str, body: bytes, t: int) -> str:
    """The header a CRM sends with an answer (what a CRM's integration does, in Python)."""
    return f"t={t},v1={_mac(secret, method, path, body, t)}"


def _mac(secret: str, method: str, path: str, body: bytes, t: int) -> str:
    signed = f"{t}.{method.upper()}.{path}.".encode() + body
    return hmac.digest(secret.encode(), signed, "sha256").hex()


def verify(secret: str, header: str | None, method: str, path: str, body: bytes,
           now: float | None = None) -> tuple[int, str]:
    """(t, mac) when `header` signs this method, path and body with `secret` within the window."""
    if not header:
        raise BadSignature("missing; sign t=<unix seconds>,v1=<hex HMAC-SHA256 of "
                           '"<t>.<METHOD>.<path>.<body>">')
    found = _HEADER.fullmatch(header)
    if found is None:
        raise BadSignature("write it exactly t=<unix seconds>,v1=<64 hex digits>: one of each, no spaces")
    t, mac = int(found[1]), found[2]
    now = time.time() if now is None else now
    if abs(now - t) > WINDOW:
        raise BadSignature(f"signed {int(now - t)} s ago; a signature is good for {WINDOW} s")
    if not hmac.compare_digest(_mac(secret, method, path, body, t), mac):
        raise BadSignature("the signature does not match this method, path and body")
    return t, mac


class Replays:
    """Signatures already used, kept in the shared database for as long as they would verify, so
    a captured answer sent again to any API process is refused."""

    def __init__(self, ledger: Database) -> None:
        self.ledger = ledger

    def first_time(self, t: int, mac: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        try:
            with self.ledger.writing() as db:
                db.execute(delete(crm_replays).where(crm_replays.c.t < now - 2 * WINDOW))
                db.execute(insert(crm_replays).values(t=t, mac=mac, at=now))
        except IntegrityError:
            return False
        return True
