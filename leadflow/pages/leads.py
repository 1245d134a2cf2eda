"""Leads by state, a lead's timeline and scores, and "same person as": two leads made one."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from leadflow.api.context import Context
from leadflow.api.deps import Ctx
from leadflow.intake import IntakeError, aliases_for, check_event, deliver
from leadflow.keys import allowed
from leadflow.operations import leads as lead_ops
from leadflow.pages.deps import (
    FormText,
    LeadMerger,
    LoggedIn,
    Missing,
    PageCaller,
    form_caller,
    missing_on,
)
from leadflow.pages.render import activity, chart, consent_of, render, timeline

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
PersonEraser = Annotated[PageCaller, Depends(form_caller("erase_people", "erase people"))]


@router.get("/leads")
async def leads_page(request: Request, _: LoggedIn, ctx: Ctx, state: str = "") -> Response:
    try:
        rows, _next = await lead_ops.leads(ctx.client, state or None, limit=200)
    except IntakeError as err:  # a state that cannot be one: the page says so
        return render(request, "leads.html", status=422, leads=[], state=state, error=str(err))
    return render(request, "leads.html", leads=rows, state=state, error=None,
                  states=ctx.store.active().policy.states)


@router.get("/leads/{lead}")
async def lead_page(request: Request, lead: str, caller: LoggedIn, ctx: Ctx) -> Response:
    return await _lead_view(request, ctx, caller, lead)


@router.post("/leads/{lead}/identify")
async def identify_lead(request: Request, lead: str, caller: LeadMerger, ctx: Ctx, same_as: FormText = ""
                        ) -> Response:
    """A person says this lead is also someone known by another address or id: an `identify`
    event through the intake, as a form or the CRM would send it; the lead page shows the one
    lead that remains."""
    found = await lead_ops.lead(ctx.client, lead, await asyncio.to_thread(aliases_for, ctx.settings))
    if found is None:
        raise Missing(f"lead {lead}")
    other = same_as.strip()
    mine = {k: v for k, v in (found.get("profile") or {}).items() if k in ("email", "external_id") and v}
    event = {"type": "identify", "lead": mine,
             "data": {"same_as": {"email" if "@" in other else "external_id": other},
                      "source": "page", "by": caller.me or caller.role}}
    try:
        reached = await deliver(ctx.client, ctx.settings, check_event(event), door="page")
    except IntakeError as err:  # the lead's page again, saying what was wrong
        return await _lead_view(request, ctx, caller, lead, error=str(err).removeprefix("bad event: "),
                                status=422)
    return RedirectResponse(f"/leads/{reached}", status_code=303)


@router.post("/leads/{lead}/erase")
async def erase_person(request: Request, lead: str, caller: PersonEraser, ctx: Ctx, confirm: FormText = ""
                       ) -> Response:
    """Ops erase the person this lead is, everywhere (leadflow.people.erase), once the form's box
    saying so is ticked; the leads page after, where the lead no longer is."""
    from leadflow.people.erase import erase
    from leadflow.people.person import NoSuchPerson

    if confirm != "erase":
        return await _lead_view(request, ctx, caller, lead, status=422,
                                error="Nothing erased: tick the box that says the person goes for good.")
    try:
        by = caller.person or caller.me or f"page ({caller.role})"  # the record says who, never empty
        await erase(ctx.client, ctx.settings, ctx.ledger, lead, by)
    except NoSuchPerson:
        raise Missing(f"lead {lead}") from None
    return RedirectResponse("/leads", status_code=303)


async def _lead_view(request: Request, ctx: Context, caller: PageCaller, lead: str, error: str | None = None,
                     status: int = 200) -> Response:
    with missing_on(IntakeError, f"lead {lead}"):  # an id that cannot be a lead's
        aliases = await asyncio.to_thread(aliases_for, ctx.settings)  # the database: off the loop
        found = await lead_ops.lead(ctx.client, lead, aliases)
    if found is None:
        raise Missing(f"lead {lead}")
    did = await asyncio.to_thread(activity, ctx.ledger, found["lead_id"])
    return render(request, "lead.html", status=status, lead=found, story=timeline(found.get("story", [])),
                  chart=chart(found.get("score_history", [])), error=error,
                  merges=allowed(caller.role, "merge_leads"), activity=did,
                  erases=allowed(caller.role, "erase_people"),
                  consent=consent_of(found.get("profile") or {}))
