"""Leads out: one lead as its workflow knows it, and lists of leads from the search attributes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from leadflow.identity.aliases import Aliases
from leadflow.intake import IntakeError, _row, leads_query
from rules.identity import lead_key
from rules.models import LeadRef
from workflows.lead import LeadWorkflow

log = logging.getLogger("leadflow.leads")


def lead_id(who: str) -> str:
    """A lead's workflow id from its id, e-mail or external id."""
    who = who.strip()
    if who.startswith("lead-"):
        return who
    return lead_key(LeadRef(email=who) if "@" in who else LeadRef(external_id=who))


async def lead(client: Client, who: str, aliases: Aliases | None = None) -> dict[str, Any] | None:
    """The lead's state, scores, profile, facts, track, open hand-off and story; None if none.
    An id merged into another lead reads that lead (its `aliases` list both)."""
    try:
        key = lead_id(who)
    except ValueError as err:
        raise IntakeError(f"lead: {err}") from None
    if aliases is not None:
        try:
            key = await asyncio.to_thread(aliases.one, key)
        except (DBAPIError, PoolTimeout):
            # the shared database is down: the lead is read under its own id (a merged id reads
            # nothing meanwhile), so its page can say what it waits for
            log.warning("lead %s read without its aliases: the shared database did not answer", key)
    try:
        view = await client.get_workflow_handle(key).query(LeadWorkflow.state)
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            return None
        raise
    return view.model_dump(mode="json")


async def leads(client: Client, state: str | None = None, limit: int = 50, page_token: str | None = None,
                secret: bytes = b"") -> tuple[list[dict[str, Any]], str | None]:
    """A page of running leads, newest first, and the token of the next page (None at the end).
    Tokens are signed with `secret`: one that is not ours is refused here, not sent to Temporal
    (whose answer to a garbled token is an internal error)."""
    token = _decode(page_token, secret)
    pages = client.list_workflows(leads_query(state), page_size=limit, next_page_token=token)
    try:
        await pages.fetch_next_page(page_size=limit)
    except RPCError as err:
        if token and err.status == RPCStatusCode.INVALID_ARGUMENT:
            raise IntakeError("page_token: not a token this service gave out") from None
        raise
    rows = [_row(wf) for wf in pages.current_page or []][:limit]
    nxt = pages.next_page_token
    return rows, _encode(nxt, secret) if nxt else None


def _encode(token: bytes, secret: bytes) -> str:
    return f"{base64.urlsafe_b64encode(token).decode()}.{_sign(token, secret)}"


def _sign(token: bytes, secret: bytes) -> str:
    return hmac.new(secret, token, hashlib.sha256).hexdigest()[:24]


def _decode(page_token: str | None, secret: bytes) -> bytes | None:
    if not page_token:
        return None
    body, _, signature = page_token.partition(".")
    try:
        token = base64.b64decode(body.encode(), altchars=b"-_", validate=True)
    except (ValueError, TypeError):
        token = b""
    if not token or not hmac.compare_digest(signature, _sign(token, secret)):
        raise IntakeError("page_token: not a token this service gave out")
    return token
