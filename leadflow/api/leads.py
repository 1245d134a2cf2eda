"""GET /v1/leads/{lead} and GET /v1/leads: a lead's state and story; leads by state, paged."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from leadflow import intake
from leadflow.api.deps import ERRORS, Caller, Ctx, ReadsLeads, answer, require_caller, unprocessable
from leadflow.operations import leads

router = APIRouter(prefix="/v1", tags=["leads"], responses={**ERRORS, 404: answer("no such lead"),
                                                            422: answer("a bad state or page token")})


class LeadPage(BaseModel):
    leads: list[dict[str, Any]]
    next_page_token: str | None = None


@router.get("/leads/{lead}", summary="A lead by id, e-mail or external id: state, scores, profile, "
            "facts, track, open hand-off and story")
async def get_lead(lead: str, ctx: Ctx, _: ReadsLeads) -> dict[str, Any]:
    aliases = await asyncio.to_thread(intake.aliases_for, ctx.settings)  # the first opens the database
    found = await leads.lead(ctx.client, lead, aliases)
    if found is None:
        raise HTTPException(404, f"no lead {lead!r}")
    return found


class SameAs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str | None = Field(None, max_length=320)
    external_id: str | None = Field(None, min_length=1, max_length=200)


@router.post("/leads/{lead}/same-as", summary="Say the lead is the same person as another id: the two "
             "leads become one (an identify event; sales, ops and admin)")
async def same_as(lead: str, body: SameAs, ctx: Ctx,
                  caller: Annotated[Caller, Depends(require_caller("merge_leads"))]) -> dict[str, Any]:
    aliases = await asyncio.to_thread(intake.aliases_for, ctx.settings)
    found = await leads.lead(ctx.client, lead, aliases)
    if found is None:
        raise HTTPException(404, f"no lead {lead!r}")
    mine = {k: v for k, v in (found.get("profile") or {}).items() if k in ("email", "external_id") and v}
    event = {"type": "identify", "lead": mine,
             "data": {"same_as": body.model_dump(exclude_none=True), "source": "api", "by": caller.by()}}
    try:
        reached = await intake.deliver(ctx.client, ctx.settings, intake.admit(event, ctx.store, caller.role),
                                       door="api")
    except intake.IntakeError as err:
        field, _, message = str(err).removeprefix("bad event: ").partition(": ")
        raise unprocessable(f"body.{field.removeprefix('data.same_as.')}", message or str(err)) from None
    return {"lead_id": reached}


@router.get("/leads", response_model=LeadPage, summary="Running leads, by state, a page at a time")
async def list_leads(ctx: Ctx, _: ReadsLeads, state: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 50,
                     page_token: str | None = None) -> LeadPage:
    rows, token = await leads.leads(ctx.client, state, limit, page_token, ctx.token_secret)
    return LeadPage(leads=rows, next_page_token=token)
