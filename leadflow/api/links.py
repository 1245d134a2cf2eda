"""The links in nurture e-mail, served to whoever holds them (no API key: the signed token is
the credential). /u/: unsubscribe, one click (RFC 8058's POST from the mail client) or a
confirmation on the page; /t/open/: the open pixel; /t/click/: the tracked redirect. Opens and
clicks become `email_open` and `email_click` events, marked `machine: true` when a privacy
proxy or a link scanner made them.

Bounded, so that one link cannot make a lead's score (issue 22): a fetch counts only while its
token is younger than leadflow.delivery.links.COUNT_FOR_SECONDS (90 days from signing); a second fetch
of one token from one client address in the same minute is the first one again (whatever user
agent it gives: only whether a machine or a person made it tells two apart); and at most
TOKEN_PER_HOUR (5) fetches of one token per clock hour, ADDRESS_PER_MINUTE (30) from one client
address per clock minute, count. The counts live in the shared database (link_hits), so every
API process keeps to the same bounds. A fetch that does not count still gets its pixel or its
redirect: the person reading never sees a bound."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from temporalio.service import RPCError

from activities.policies import NoPolicy
from leadflow.api.context import Context
from leadflow.api.sites import origin_of
from leadflow.delivery.links import BadLink, Bounds, Kind, identity, signed_at
from leadflow.delivery.preferences import preferences_of
from leadflow.intake import IntakeError, deliver
from leadflow.pages.routes import templates

log = logging.getLogger("leadflow.links")
router = APIRouter(include_in_schema=False)
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}
BOUNDS = Bounds()  # delivery.links defaults: 90 days, 5 per token per hour, 30 per address per minute


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


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
    """The preference page: keep or drop each topic of marketing e-mail, or all of it."""
    data = _read(request, "unsubscribe", token)
    if data is None:
        return _page(request, 400, state="bad")
    return _page(request, state="ask", action=request.url.path, topics=await _topics(request, data))


def _topic_names(request: Request) -> list[str]:
    """The topics a person may keep or drop: the active policy's, else its templates'."""
    ctx = _ctx(request)
    try:
        names = list(ctx.store.active().policy.topics)
    except NoPolicy:
        names = []
    return names or ctx.store.content.topics()


async def _topics(request: Request, data: dict[str, Any]) -> list[dict[str, Any]]:
    """The topics, each with whether this address keeps it."""
    dropped = await asyncio.to_thread(preferences_of(_ctx(request).ledger).dropped, str(data.get("a", ""))) \
        if data.get("a") else frozenset()
    return [{"name": name, "kept": name not in dropped} for name in _topic_names(request)]


async def unsubscribe(request: Request, token: str) -> Response:
    """One click from the mail client (body `List-Unsubscribe=One-Click`) or the page's button:
    the same effect, at once."""
    data = _read(request, "unsubscribe", token)
    if data is None:
        return _page(request, 400, state="bad")
    form = await request.form()
    via = "one-click" if form.get("List-Unsubscribe") == "One-Click" else "page"
    ctx = _ctx(request)
    if via == "page" and form.get("save") == "topics":  # RFC 8058's one click always drops all
        return await _choose(request, data, {str(k) for k in form.getlist("keep")})
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


async def _choose(request: Request, data: dict[str, Any], kept: set[str]) -> Response:
    """The person keeps these topics and drops the others: content of a dropped topic is held
    back at sending from now on, and the lead hears of it (`preference_changed`: its story, and
    its policy may react)."""
    names = _topic_names(request)
    dropped = {name for name in names if name not in kept}
    if data.get("a"):
        await asyncio.to_thread(preferences_of(_ctx(request).ledger).choose, str(data["a"]), dropped)
    choice = {"kept": sorted(set(names) - dropped), "dropped": sorted(dropped)}
    digest = hashlib.sha256(json.dumps([data.get("d"), choice]).encode()).hexdigest()[:16]
    await _tell(request, data["l"], {"id": f"preferences-{digest}", "type": "preference_changed",
                                     "data": {**choice, "via": "page", "content": data.get("c")}})
    return _page(request, state="saved", action=request.url.path,
                 topics=[{"name": name, "kept": name not in dropped} for name in names])


# -- opens and clicks ------------------------------------------------------------------------


async def _fetch(request: Request, kind: Kind, data: dict[str, Any]) -> dict[str, Any] | None:
    """What an open or click event says (its mail, and whether a machine made it and why), or
    None when this fetch counts nothing: the link is too old, it is a repeat, or over a bound."""
    now = time.time()
    signed = signed_at(data)
    if (why_not := BOUNDS.too_old(data, now)) or signed is None:
        log.debug("%s for %s not counted: %s", kind, data["l"], why_not, extra={"lead_id": data["l"]})
        return None
    agent = request.headers.get("user-agent", "")
    ip = request.client.host if request.client else ""
    why = _ctx(request).judge.machine(kind, agent, ip, now - signed, request.method)
    token = identity(kind, data)
    minute, hour = int(now // 60), int(now // 3600)
    # one event per token, client address and minute, whatever user agent it gives: a client that
    # loads the image twice opened it once. A machine's fetch and a person's stay two (a scanner
    # must not swallow the person's click behind it), and a machine's scores nothing anyway
    digest = hashlib.sha256(f"{token}|{ip}|{why is not None}|{minute}".encode()).hexdigest()[:16]
    place = hashlib.sha256(f"address|{ip}".encode()).hexdigest()[:32]  # no address in the database
    limits = [(f"token:{token}:{hour}", BOUNDS.per_token_hour, (hour + 1) * 3600.0),
              (f"addr:{place}:{minute}", BOUNDS.per_address_minute, (minute + 1) * 60.0)]
    try:
        verdict = await asyncio.to_thread(_ctx(request).ledger.count_link_hit, f"seen:{kind}-{digest}",
                                          (minute + 1) * 60.0, limits, now)
    except Exception as err:  # the database is out of reach: the link works, nothing counts
        log.warning("%s for %s not counted: %s", kind, data["l"], err, extra={"lead_id": data["l"]})
        return None
    if verdict != "counted":
        log.debug("%s for %s not counted: %s", kind, data["l"], verdict, extra={"lead_id": data["l"]})
        return None
    out: dict[str, Any] = {"machine": why is not None, "content": data.get("c"), "delivery": data.get("d")}
    if why:
        out["machine_why"] = why
    return {"id": f"{kind}-{digest}", "data": out}


async def open_pixel(request: Request, token: str) -> Response:
    data = _read(request, "open", token)
    if data is not None and (fetched := await _fetch(request, "open", data)) is not None:
        await _tell(request, data["l"], {"id": fetched["id"], "type": "email_open", "data": fetched["data"]})
    # a bad token gets the image too: a mail client shows no broken picture for it
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


async def click(request: Request, token: str) -> Response:
    data = _read(request, "click", token)
    if data is None or not str(data.get("u", "")).startswith(("http://", "https://")):
        return HTMLResponse("<!doctype html><title>Link not valid</title><p>This link is not valid.</p>",
                            status_code=400, headers=NO_STORE)
    if (fetched := await _fetch(request, "click", data)) is not None:
        await _tell(request, data["l"], {"id": fetched["id"], "type": "email_click",
                                         "data": {**fetched["data"], "url": data["u"]}})
    return RedirectResponse(_named(data["u"], token, _ctx(request).settings.sites), status_code=302,
                            headers=NO_STORE)


def _named(target: str, token: str, sites: tuple[str, ...]) -> str:
    """A link to one of the customer's sites (LEADFLOW_SITES) carries its token on (`lf_click`):
    the tracking script there names the visitor as the lead the e-mail went to."""
    if origin_of(target) not in sites:
        return target
    parts = urlsplit(target)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), ("lf_click", token)])
    return urlunsplit(parts._replace(query=query))


router.add_api_route("/u/{token}", unsubscribe_page, methods=["GET"])
router.add_api_route("/u/{token}", unsubscribe, methods=["POST"])
router.add_api_route("/t/open/{token}", open_pixel, methods=["GET", "HEAD"])
router.add_api_route("/t/click/{token}", click, methods=["GET", "HEAD"])
