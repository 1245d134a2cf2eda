"""DELETE /v1/people/{lead} and GET /v1/people/{lead}/export: a person erased everywhere
leadflow keeps them, or everything held about them as one JSON document (leadflow.people; ops
and admin)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException

from leadflow.api.deps import ERRORS, Caller, Ctx, answer, require_caller
from leadflow.people.erase import erase
from leadflow.people.export import export
from leadflow.people.person import NoSuchPerson

router = APIRouter(prefix="/v1", tags=["people"], responses={**ERRORS, 404: answer("no such person")})


@router.get("/people/{lead}/export", summary="Everything leadflow holds about a person (by lead id, "
            "e-mail or external id), as one JSON document: profile, events, story, scores, consents, "
            "deliveries, hand-offs, aliases and merges (ops and admin)")
async def export_person(lead: str, ctx: Ctx, _: Annotated[Caller, Depends(require_caller("export_people"))]
                        ) -> dict[str, Any]:
    return await _found(export(ctx.client, ctx.ledger, lead), lead)


@router.delete("/people/{lead}", summary="Erase a person everywhere leadflow keeps them (their leads' runs, "
               "archive, ledger rows, endings, seen ids, visits, mail); a suppression stays as a hash. "
               "Answers the erasure's record (ops and admin)")
async def erase_person(lead: str, ctx: Ctx, caller: Annotated[Caller, Depends(require_caller("erase_people"))]
                       ) -> dict[str, Any]:
    return await _found(erase(ctx.client, ctx.settings, ctx.ledger, lead, caller.by()), lead)


async def _found(work: Awaitable[dict[str, Any]], lead: str) -> dict[str, Any]:
    try:
        return await work
    except NoSuchPerson:
        raise HTTPException(404, f"no person {lead!r}") from None
