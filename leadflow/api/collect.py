"""The tracking script's doors, called from the pages of LEADFLOW_SITES with no key: GET /c.js,
the script itself, and POST /v1/collect, its page views and `identify` calls. The origin is
checked before a request gets here (leadflow.api.sites); here each request is bounded: a body
of at most MAX_BODY bytes, a rate per visitor and per client address, MAX_VIEWS kept per
anonymous visitor (leadflow.tracking.visitors). A browser that sends Global Privacy Control
(`Sec-GPC: 1`, or the script's `gpc`) is not tracked until its visitor is a lead. Each request
is answered 204 whatever became of it, so a page learns nothing of who is a lead."""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import ValidationError

from leadflow import intake
from leadflow.api.context import Context
from leadflow.api.deps import Ctx, answer
from leadflow.api.events import read_raw
from leadflow.api.limits import Limiter
from leadflow.delivery.links import BadLink
from leadflow.ops import metrics
from leadflow.tracking.source import first_touch, utm_of
from leadflow.tracking.stitch import VISITOR, page_view, ref_of
from leadflow.tracking.visitors import visitors_of
from rules.identity import lead_key
from rules.models import LeadRef

router = APIRouter(tags=["tracking"])
SCRIPT = resources.files("leadflow.tracking").joinpath("c.js").read_bytes()
MAX_BODY = 4096  # bytes of one page view or identify call
PER_VISITOR = Limiter(rate=2.0, burst=30.0)  # a person clicking through a site, not a loop
EARLIEST = 86400.0  # a browser's clock may say a page was seen up to a day ago (a tab left open)
TEXTS = {"path": 2000, "title": 300, "referrer": 2000}  # characters kept of each


def _counted(outcome: str) -> Response:
    metrics.count("leadflow_collected", "Calls to /v1/collect by what became of them", {"outcome": outcome})
    return Response(status_code=204)


@router.get("/c.js", include_in_schema=False)
async def script() -> Response:
    return Response(SCRIPT, media_type="text/javascript; charset=utf-8",
                    headers={"Cache-Control": "public, max-age=3600"})


@router.post("/v1/collect", status_code=204, response_class=Response, responses={
    400: answer("a body that is not JSON"),
    403: answer("a request from an origin not in LEADFLOW_SITES, or with none"),
    413: answer(f"a body over {MAX_BODY} bytes"),
    422: answer("no visitor id, or a page view without its page's address"),
    503: answer("Temporal or the shared database did not answer")},
    summary="A page view or identify() from the tracking script (no key; only from the origins of "
            "LEADFLOW_SITES); 204 whatever became of it")
async def collect(request: Request, ctx: Ctx) -> Response:
    raw = await read_raw(request, MAX_BODY)
    try:
        body = json.loads(raw)
    except ValueError:
        raise HTTPException(400, "the body is not JSON") from None
    visitor = body.get("visitor") if isinstance(body, dict) else None
    if not isinstance(visitor, str) or not VISITOR.match(visitor):
        raise HTTPException(422, "visitor: the script's visitor id (16 to 64 of A-Z a-z 0-9 _ -)")
    address = request.client.host if request.client else ""
    if not (_per_address(ctx).allow(address) and PER_VISITOR.allow(visitor)):
        return _counted("limited")
    kind = body.get("type")
    now = time.time()
    if kind == "identify":
        return await _identify(ctx, visitor, body, now)
    if kind != "page_view":
        raise HTTPException(422, "type: page_view or identify")
    view = _view(body)
    at = _at(body.get("at"), now)
    visitors = visitors_of(ctx.ledger)
    if request.headers.get("sec-gpc") == "1" or body.get("gpc") is True:
        known = await asyncio.to_thread(visitors.known, visitor)
        if known is None:
            return _counted("gpc")
    else:
        kept = await asyncio.to_thread(visitors.view, visitor, at, view, now)
        if kept is True:
            return _counted("kept")
        if kept is False:
            return _counted("full")
        known = kept
    await _send(ctx, [page_view(known.ref, at, view, visitor)])
    return _counted("sent")


_PER_ADDRESS: dict[float, Limiter] = {}  # by LEADFLOW_COLLECT_RATE: one bucket set per setting


def _per_address(ctx: Context) -> Limiter:
    rate = ctx.settings.collect_rate
    if rate not in _PER_ADDRESS:
        _PER_ADDRESS[rate] = Limiter(rate=rate, burst=rate * 2)
    return _PER_ADDRESS[rate]


def _view(body: dict[str, Any]) -> dict[str, Any]:
    """What a page view keeps: its path, title, referrer and UTM parameters, each bounded."""
    url = body.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise HTTPException(422, "url: the page's address (http or https)")
    view: dict[str, Any] = {"path": urlsplit(url).path or "/"}
    for name in ("title", "referrer"):
        if isinstance(body.get(name), str) and body[name]:
            view[name] = body[name]
    view = {k: v[:TEXTS[k]] for k, v in view.items()}
    if utm := utm_of(url):
        view["utm"] = utm
    return view


def _at(value: Any, now: float) -> float:
    """When the page was seen: the browser's time (epoch milliseconds), within the last day and
    not ahead of ours; else now."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        at = float(value) / 1000.0
        if now - EARLIEST <= at <= now:
            return at
    return now


async def _identify(ctx: Context, visitor: str, body: dict[str, Any], now: float) -> Response:
    """The visitor is a lead that exists: by the e-mail the page says (`leadflow.identify`), or
    by the click token of a nurture e-mail's link that brought it here."""
    profile: dict[str, Any] | None = None
    if isinstance(body.get("click"), str):
        try:
            lead = str(ctx.links.read("click", body["click"])["l"])
        except (BadLink, KeyError):
            return _counted("bad_identify")
        profile = await _profile(ctx, lead)
    elif isinstance(body.get("email"), str):
        try:
            lead = lead_key(LeadRef(email=body["email"][:320]))
        except ValidationError:
            return _counted("bad_identify")
        profile = await _profile(ctx, lead)
    if profile is None:
        return _counted("unknown_lead")
    ref = ref_of(profile)
    views = await asyncio.to_thread(visitors_of(ctx.ledger).name, visitor, lead, ref, now)
    sent = [page_view(ref, at, view, visitor) for at, view in views]
    if sent and not profile.get("source"):  # a lead of no known source: this visitor's first touch
        touch = first_touch(views[0][1], intake.own_domains(ctx.settings))
        sent[0] = page_view({**ref, **touch}, *views[0], visitor)
    await _send(ctx, sent)
    return _counted("identified")


async def _profile(ctx: Context, lead: str) -> dict[str, Any] | None:
    """The lead's profile, or None when there is no such lead running."""
    from leadflow.operations import leads as lead_ops

    found = await lead_ops.lead(ctx.client, lead, await asyncio.to_thread(intake.aliases_for, ctx.settings))
    profile = (found or {}).get("profile") or {}
    return profile if profile.get("email") or profile.get("external_id") else None


async def _send(ctx: Context, views: list[dict[str, Any]]) -> None:
    if views:
        await intake.send_events(ctx.client, ctx.settings, ctx.store, ctx.seen, views, door="collect",
                                 role="intake")
