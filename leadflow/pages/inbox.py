"""The sales inbox: my tasks, the tasks of my queues waiting for a free rep, every other open task;
and "I am", for a session whose key does not say who holds it."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from leadflow.api.deps import Ctx
from leadflow.keys import allowed
from leadflow.operations import tasks as task_ops
from leadflow.pages.deps import FormCaller, FormText, LoggedIn
from leadflow.pages.render import left, render

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


@router.get("/inbox")
async def inbox(request: Request, caller: LoggedIn, ctx: Ctx, queue: str = "") -> Response:
    rows = await task_ops.assigned_tasks(ctx.client, ctx.desk)
    roster = await asyncio.to_thread(ctx.desk.roster)
    me = caller.me
    my_rep = roster.rep(me) if me else None
    queues = sorted({r.get("LeadflowQueue") or "?" for r in rows})
    details = []
    for row in rows:
        if queue and row.get("LeadflowQueue") != queue:
            continue
        try:
            found = await task_ops.task(ctx.client, row["id"])
        except task_ops.NoSuchTask:
            continue
        details.append({**found, "rep": row["rep"], "assignment": row["assignment"]})
    details.sort(key=lambda t: t.get("due_at") or "9999")
    for t in details:
        t["left"] = left(t.get("seconds_left"))
        t["name"] = ((t.get("lead_story") or {}).get("profile") or {}).get("name") or t.get("lead_email")
        held_by = roster.rep(t["rep"]) if t["rep"] else None
        t["rep_name"] = t.get("rep_name") or (held_by.name if held_by and held_by.name else t["rep"])
    mine = [t for t in details if me and t["rep"] == me]
    # without a rep, every queue is "mine" to look at: nobody else will see these tasks wait
    unassigned = [t for t in details if t["assignment"] == "waiting"
                  and (my_rep is None or t.get("queue") in my_rep.queues)]
    shown = {t["id"] for t in mine + unassigned}
    return render(request, "inbox.html", mine=mine, unassigned=unassigned,
                  tasks=[t for t in details if t["id"] not in shown], queues=queues, queue=queue,
                  works=allowed(caller.role, "work_tasks"), my_rep=my_rep, reps=roster.reps,
                  asks_who=caller.person is None)


@router.post("/inbox/me")
async def choose_rep(request: Request, caller: FormCaller, ctx: Ctx, rep: FormText = "") -> Response:
    """Who the session's person is, when their key does not say."""
    if caller.person is not None:
        raise HTTPException(403, "your key says who you are")
    rep = rep.strip()
    if rep and (await asyncio.to_thread(ctx.desk.roster)).rep(rep) is None:
        raise HTTPException(422, f"no rep {rep!r} in the roster")
    if rep:
        request.session["rep"] = rep
    else:
        request.session.pop("rep", None)
    return RedirectResponse("/inbox", status_code=303)
