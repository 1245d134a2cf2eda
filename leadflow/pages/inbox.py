"""The sales inbox: my tasks, the tasks of my queues waiting for a free rep, every other open task;
and "I am", for a session whose key does not say who holds it."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from leadflow.api.context import Context
from leadflow.api.deps import Ctx
from leadflow.keys import allowed
from leadflow.operations import tasks as task_ops
from leadflow.pages.deps import FormCaller, FormText, LoggedIn
from leadflow.pages.render import age, render
from leadflow.routing.desk import why_none_free  # the words routing logs: one wording
from leadflow.routing.roster import Roster

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


@router.get("/inbox")
async def inbox(request: Request, caller: LoggedIn, ctx: Ctx, queue: str = "") -> Response:
    """The rows come from one listing of the tasks (their queue, status and SLA due time are
    search attributes) and what the shared database holds (who holds each, who its lead is, the
    roster), never from a query to each task: why its lead is sales-ready is on the task's page."""
    listed = await task_ops.task_list(ctx.client, ctx.desk)
    roster, load, names = await asyncio.to_thread(_shared, ctx, [t["lead"] for t in listed if t["lead"]])
    queues = sorted({t.get("LeadflowQueue") or "?" for t in listed})
    now = time.time()
    rows = [_row(t, roster, load, names, now) for t in listed
            if not queue or t.get("LeadflowQueue") == queue]
    # the nearest SLA first (tasks from before their due time was indexed: the oldest among them)
    rows.sort(key=lambda t: (t["due"] if t["due"] is not None else math.inf, t["opened_at"] or math.inf))
    me = caller.me
    my_rep = roster.rep(me) if me else None
    mine = [t for t in rows if me and t["rep"] == me]
    # without a rep, every queue is "mine" to look at: nobody else will see these tasks wait
    unassigned = [t for t in rows if t["assignment"] == "waiting"
                  and (my_rep is None or t["queue"] in my_rep.queues)]
    shown = {t["id"] for t in mine + unassigned}
    return render(request, "inbox.html", mine=mine, unassigned=unassigned,
                  tasks=[t for t in rows if t["id"] not in shown], queues=queues, queue=queue,
                  works=allowed(caller.role, "work_tasks"), my_rep=my_rep, reps=roster.reps,
                  asks_who=caller.person is None)


def _shared(ctx: Context, leads: list[str]) -> tuple[Roster, dict[str, int], dict[str, str]]:
    """What the inbox reads from the shared database, in one trip off the event loop."""
    return ctx.desk.roster(), ctx.desk.load(), task_ops.lead_names(ctx.ledger, leads)


def _row(task: dict[str, Any], roster: Roster, load: dict[str, int], names: dict[str, str], now: float
         ) -> dict[str, Any]:
    queue = task.get("LeadflowQueue") or ""
    due_at = task.get("LeadflowTaskDue")
    due = datetime.fromisoformat(due_at).timestamp() if isinstance(due_at, str) else None
    held_by = roster.rep(task["rep"]) if task["rep"] else None
    # why it waits, as of now (the task said it when it last tried; a rep may have left since)
    waiting = why_none_free(roster, queue, datetime.fromtimestamp(now, timezone.utc), load, ()) \
        if task["assignment"] == "waiting" else None
    return {"id": task["id"], "queue": queue, "status": task.get("LeadflowTaskStatus") or "",
            "name": names.get(task["lead"] or "") or task["lead"] or task["id"],
            "rep": task["rep"], "rep_name": held_by.name if held_by and held_by.name else task["rep"],
            "assignment": task["assignment"], "waiting": waiting, "opened_at": task["opened_at"],
            "age": age(now - task["opened_at"]) if task["opened_at"] else "",
            "due": due, "overdue": due is not None and due < now,
            "left": "" if due is None else f"{age(due - now)} left" if due >= now
            else f"overdue {age(now - due)}"}


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
