"""The links in nurture e-mail, served to whoever holds them (no API key: the signed token is
the credential). /u/: unsubscribe, one click (RFC 8058's POST from the mail client) or a
confirmation on the page; /t/open/: the open pixel; /t/click/: the tracked redirect. Opens and
clicks become `email_open` and `email_click` events, marked `machine: true` when a privacy
proxy or a link scanner made them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from temporalio.service import RPCError

from delivery.links import BadLink, Kind
from service.api.context import Context
from service.intake import IntakeError, deliver
from service.pages.routes import templates

log = logging.getLogger("leadflow.links")
router = APIRouter(include_in_schema=False)
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


def _read(request: Request, kind: Kind, token: str) -> dict[str, Any] | None:
    try:
        return _ctx(request).links.read(kind, token)
    except BadLink:
        return None


def _page(request: Request, status: int = 200, **values: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, "unsubscribe.html", {"role": None, "csrf": "", **values},
                                      status_code=status, headers=NO_STORE)


async def _tell(request: Request, lead: str, event: dict[str, Any]) -> bool:
    """Pass the event to its lead; a lead that is gone or a Temporal that does not answer is
    logged, never shown to the person who clicked."""
    event = {"at": datetime.now(timezone.utc).isoformat(), **event}
    ctx = _ctx(request)
    try:
        await deliver(ctx.client, ctx.settings, event, key=lead, door="link")
        return True
    except (IntakeError, RPCError) as err:
        log.warning("%s for %s not passed on: %s", event["type"], lead, err,
                    extra={"lead_id": lead, "event_id": event.get("id")})
        return False


# -- unsubscribe -----------------------------------------------------------------------------


async def unsubscribe_page(request: Request, token: str) -> Response:
    if _read(request, "unsubscribe", token) is None:
        return _page(request, 400, state="bad")
    return _page(request, state="ask", action=request.url.path)


async def unsubscribe(request: Request, token: str) -> Response:
    """One click from the mail client (body `List-Unsubscribe=One-Click`) or the page's button:
    the same effect, at once."""
    data = _read(request, "unsubscribe", token)
    if data is None:
        return _page(request, 400, state="bad")
    form = await request.form()
    via = "one-click" if form.get("List-Unsubscribe") == "One-Click" else "page"
    ctx = _ctx(request)
    # the address first: whatever happens to the event, no more marketing mail goes to it
    if data.get("a"):
        await asyncio.to_thread(ctx.ledger.suppress_hash, str(data["a"]), "unsubscribed", data["l"],
                                f"{via}, from {data.get('c')}")
    await _tell(request, data["l"], {
        "id": f"unsubscribe-{data.get('d')}", "type": "unsubscribe",
        "data": {"via": via, "content": data.get("c"), "delivery": data.get("d")}})
    if via == "one-click":
        return Response(status_code=200, headers=NO_STORE)
    return _page(request, state="done")


# -- opens and clicks ------------------------------------------------------------------------


def _fetch(request: Request, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """What an open or click event says: its mail, and whether a machine made it (and why)."""
    agent = request.headers.get("user-agent", "")
    ip = request.client.host if request.client else ""
    seconds = time.time() - float(data.get("t") or 0)
    why = _ctx(request).judge.machine(kind, agent, ip, seconds, request.method)
    # one event per fetcher per minute: a client that loads the image twice opened it once
    digest = hashlib.sha256(f"{data.get('d')}|{agent}|{ip}|{int(time.time() // 60)}|{data.get('u', '')}"
                            .encode()).hexdigest()[:16]
    out: dict[str, Any] = {"machine": why is not None, "content": data.get("c"), "delivery": data.get("d")}
    if why:
        out["machine_why"] = why
    return {"id": f"{kind}-{digest}", "data": out}


async def open_pixel(request: Request, token: str) -> Response:
    data = _read(request, "open", token)
    if data is not None:
        fetched = _fetch(request, "open", data)
        await _tell(request, data["l"], {"id": fetched["id"], "type": "email_open", "data": fetched["data"]})
    # a bad token gets the image too: a mail client shows no broken picture for it
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


async def click(request: Request, token: str) -> Response:
    data = _read(request, "click", token)
    if data is None or not str(data.get("u", "")).startswith(("http://", "https://")):
        return HTMLResponse("<!doctype html><title>Link not valid</title><p>This link is not valid.</p>",
                            status_code=400, headers=NO_STORE)
    fetched = _fetch(request, "click", data)
    await _tell(request, data["l"], {"id": fetched["id"], "type": "email_click",
                                     "data": {**fetched["data"], "url": data["u"]}})
    return RedirectResponse(data["u"], status_code=302, headers=NO_STORE)


router.add_api_route("/u/{token}", unsubscribe_page, methods=["GET"])
router.add_api_route("/u/{token}", unsubscribe, methods=["POST"])
router.add_api_route("/t/open/{token}", open_pixel, methods=["GET", "HEAD"])
router.add_api_route("/t/click/{token}", click, methods=["GET", "HEAD"])
