"""GET /v1/leads/{lead} and GET /v1/leads: a lead's state and story; leads by state, paged."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from service import intake, leads
from service.api.deps import ERRORS, Ctx, ReadsLeads, answer

router = APIRouter(prefix="/v1", tags=["leads"], responses={**ERRORS, 404: answer("no such lead"),
                                                            422: answer("a bad state or page token")})


class LeadPage(BaseModel):
    leads: list[dict[str, Any]]
    next_page_token: str | None = None


@router.get("/leads/{lead}", summary="A lead by id, e-mail or external id: state, scores, profile, "
            "facts, track, open hand-off and story")
async def get_lead(lead: str, ctx: Ctx, _: ReadsLeads) -> dict[str, Any]:
    found = await leads.lead(ctx.client, lead, intake.aliases_for(ctx.settings))
    if found is None:
        raise HTTPException(404, f"no lead {lead!r}")
    return found


@router.get("/leads", response_model=LeadPage, summary="Running leads, by state, a page at a time")
async def list_leads(ctx: Ctx, _: ReadsLeads, state: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 50,
                     page_token: str | None = None) -> LeadPage:
    rows, token = await leads.leads(ctx.client, state, limit, page_token, ctx.token_secret)
    return LeadPage(leads=rows, next_page_token=token)
