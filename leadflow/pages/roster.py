"""The sales roster: who works which queue, their capacity and time away; sales change it here."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from leadflow.api.context import Context
from leadflow.api.deps import Ctx
from leadflow.keys import allowed
from leadflow.operations import roster as roster_ops
from leadflow.pages.deps import FormText, Missing, PageCaller, RosterManager, RosterReader
from leadflow.pages.render import minute, render

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


@router.get("/roster")
async def roster_page(request: Request, caller: RosterReader, ctx: Ctx) -> Response:
    return await _roster_view(request, ctx, caller)


@router.post("/roster/{rep_id}")
async def change_rep(request: Request, rep_id: str, caller: RosterManager, ctx: Ctx, capacity: FormText = "",
                     away_from: FormText = "", away_until: FormText = "", action: FormText = "save"
                     ) -> Response:
    """A rep's capacity and time away, as the form shows them: empty away fields (or "Back")
    mean not away."""
    rep = (await asyncio.to_thread(ctx.desk.roster)).rep(rep_id)
    if rep is None:
        raise Missing(f"rep {rep_id}")
    ends = {"from": away_from.strip() or None, "until": away_until.strip() or None}
    away = None if action == "back" or not any(ends.values()) else ends
    try:
        new = roster_ops.changed(rep, {"capacity": capacity.strip(), "away": away})
    except roster_ops.ChangeRefused as err:  # the roster again, saying what was wrong
        return await _roster_view(request, ctx, caller, error=f"{rep_id}: {err}", status=422)
    await asyncio.to_thread(ctx.desk.put_rep, new, caller.me or f"page ({caller.role})")
    await roster_ops.wake_waiting(ctx.client, ctx.desk)
    return RedirectResponse("/roster", status_code=303)


async def _roster_view(request: Request, ctx: Context, caller: PageCaller, error: str | None = None,
                       status: int = 200) -> Response:
    view = await asyncio.to_thread(roster_ops.view, ctx.desk)
    for rep in view["reps"]:
        away = rep["away"] or {}
        rep["away_from"], rep["away_until"] = away.get("from") or "", away.get("until") or ""
        rep["from_shown"], rep["until_shown"] = minute(rep["away_from"]), minute(rep["away_until"])
    return render(request, "roster.html", status=status, view=view, error=error,
                  manages=allowed(caller.role, "manage_roster"))
