"""For ops: every delivery, filtered, and the funnel report."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from leadflow.api.deps import Ctx
from leadflow.db.database import STATUSES
from leadflow.operations import leads as lead_ops
from leadflow.operations.deliveries import KINDS, BadFilter, listing
from leadflow.pages.deps import DeliveriesReader, FunnelReader
from leadflow.pages.render import render

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


@router.get("/deliveries")
async def deliveries_page(request: Request, _: DeliveriesReader, ctx: Ctx, status: str = "", kind: str = "",
                          lead: str = "") -> Response:
    error = None
    try:
        key = lead_ops.lead_id(lead) if lead.strip() else None
        rows = await asyncio.to_thread(listing, ctx.ledger, lead=key, status=status or None,
                                       kind=kind or None, limit=500)
    except (BadFilter, ValueError) as err:  # the page says which filter cannot be
        rows, error = [], str(err)
    counts = await asyncio.to_thread(ctx.ledger.counts)
    return render(request, "deliveries.html", status=422 if error else 200, rows=rows, error=error,
                  counts=counts, status_=status, kind=kind, lead=lead, statuses=STATUSES, kinds=KINDS)


@router.get("/funnel")
async def funnel_page(request: Request, _: FunnelReader, ctx: Ctx, by: str = "version", since: str = "",
                      until: str = "") -> Response:
    """The funnel report for ops: the same page `leadflow report funnel --out` writes."""
    from leadflow.reports.funnel import body, charts, funnel, load

    error = None
    try:
        window = [_moment(text, name) for text, name in ((since, "since"), (until, "until"))]
    except ValueError as err:
        window, error = [None, None], str(err)
    grouping = "week" if by == "week" else "version"

    def build() -> str:
        figures = funnel(load(ctx.ledger, *window), grouping)  # type: ignore[arg-type]
        return body(figures, charts(figures) if figures["leads"] else {})

    return render(request, "funnel.html", status=422 if error else 200, error=error, by=grouping,
                  since=since, until=until, report=await asyncio.to_thread(build))


def _moment(text: str, name: str) -> datetime | None:
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a date (2026-03-01)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
