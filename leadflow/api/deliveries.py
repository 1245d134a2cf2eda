"""The delivery ledger for ops: every e-mail and webhook, its status and why."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query

from leadflow.api.deps import ERRORS, Ctx, ReadsDeliveries, unprocessable
from leadflow.operations.deliveries import BadFilter, listing
from leadflow.operations.leads import lead_id

router = APIRouter(prefix="/v1", tags=["deliveries"], responses=ERRORS)


@router.get("/deliveries", summary="Deliveries, newest first: e-mails, hand-off and escalation webhooks")
async def list_deliveries(ctx: Ctx, _: ReadsDeliveries, lead: str | None = Query(None, max_length=320),
                          kind: str | None = None, status: str | None = None,
                          limit: int = Query(200, ge=1, le=10_000)) -> dict[str, list[dict[str, Any]]]:
    try:
        key = lead_id(lead) if lead else None
    except ValueError as err:
        raise unprocessable("query.lead", str(err)) from None
    try:
        rows = await asyncio.to_thread(listing, ctx.ledger, lead=key, status=status, kind=kind, limit=limit)
    except BadFilter as err:
        where = "query.status" if str(err).startswith("status") else "query.kind"
        raise unprocessable(where, str(err)) from None
    return {"deliveries": rows}
