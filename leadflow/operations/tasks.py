"""Hand-off tasks: list them, read one with the lead's story, and answer it (accept, reject with
a reason, reassign to another queue). Answers are updates: the caller hears at once whether
they counted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import case, func, select
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from leadflow.db.database import Database
from leadflow.db.schema import events
from leadflow.intake import IntakeError, list_workflows, safe_name, tasks_query
from leadflow.routing.desk import Desk
from workflows.handoff import HandoffWorkflow
from workflows.types import AcceptInput, ReassignInput, RejectInput, TaskView

Task = WorkflowHandle[HandoffWorkflow, TaskView]


class TaskError(ValueError):
    """The task refused the answer (already answered, no reason, same queue)."""


class NoSuchTask(LookupError):
    pass


async def tasks(client: Client, queue: str | None = None, status: str | None = None,
                limit: int = 200, ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Tasks from the search attributes: open and escalated ones unless a status (or `all`) is
    asked; `ids`: only these (each a safe name)."""
    every = status == "all"
    query = tasks_query(queue, every, None if every else status)
    if ids is not None:
        query += " AND WorkflowId IN (" + ", ".join(f"'{safe_name(i, 'task')}'" for i in ids) + ")"
    return await list_workflows(client, query, limit=limit)


async def assigned_tasks(client: Client, desk: Desk, queue: str | None = None, status: str | None = None,
                         rep: str | None = None, assigned: bool | None = None, limit: int = 200
                         ) -> list[dict[str, Any]]:
    """Tasks as `tasks` lists them, each with who holds it: `rep` (a rep id or None) and
    `assignment` (open: a rep has it; waiting: no rep was free; None: never routed, or closed).
    `rep`: only that rep's tasks; `assigned` false: only tasks waiting for a rep, true: only
    tasks a rep holds."""
    ids = None
    if rep is not None or assigned is False:
        # asked by the desk first: a filter applied after a visibility page of `limit` tasks
        # would miss a rep's tasks beyond it
        if rep is not None and assigned is False:
            return []
        held = await asyncio.to_thread(desk.assigned, rep=rep, queue=queue, waiting=assigned is False)
        ids = [row["task"] for row in held if _safe(row["task"])][:limit]
        if not ids:
            return []
    rows = await tasks(client, queue, status, limit, ids)
    desk_rows = await asyncio.to_thread(desk.of, [row["id"] for row in rows])
    out = []
    for row in rows:
        row = {**row, **_held(desk_rows.get(row["id"]))}
        if rep is not None and row["rep"] != rep:
            continue
        if assigned is not None and (row["assignment"] == "open") != assigned:
            continue
        out.append(row)
    return out


async def task_list(client: Client, desk: Desk, limit: int = 200) -> list[dict[str, Any]]:
    """Open and escalated tasks as a list shows them: one visibility listing and one read of the
    desk, never a query to each task's workflow (a list of 200 costs what a list of 2 does).
    Each row as `assigned_tasks` gives it, with `lead` (the lead's workflow id) and `opened_at`
    (unix seconds the desk first routed it; None for a task from before routing)."""
    rows = await tasks(client, limit=limit)
    desk_rows = await asyncio.to_thread(desk.of, [row["id"] for row in rows])
    out = []
    for row in rows:
        held_by = desk_rows.get(row["id"]) or {}
        out.append({**row, **_held(held_by), "lead": held_by.get("lead") or _lead_of(row["id"]),
                    "opened_at": held_by.get("created_at")})
    return out


def _held(desk_row: dict[str, Any] | None) -> dict[str, Any]:
    """Who holds a task, from its desk row: `rep` (a rep id or None) and `assignment`."""
    state = (desk_row or {}).get("status")
    state = state if state in ("open", "waiting") else None
    return {"rep": (desk_row or {}).get("rep") if state == "open" else None, "assignment": state}


def _lead_of(task_id: str) -> str | None:
    """The lead a task was opened for, from its id (`handoff-<lead id>-<n>`, workflows.lead)."""
    lead, _, n = task_id.removeprefix("handoff-").rpartition("-")
    return lead if task_id.startswith("handoff-lead-") and n.isdigit() else None


def lead_names(ledger: Database, leads: list[str]) -> dict[str, str]:
    """Who each lead is, as a list of tasks names them: the name its archived events last gave
    (the profile is those events' fields, the latest last), else its e-mail or external id. One
    read of the event archive for every lead, where the leads' workflows would need a query each."""
    if not leads:
        return {}
    c = events.c
    named = case((c.body.like('%"name":%'), 1), else_=0)  # narrows; the JSON below decides
    newest = func.row_number().over(partition_by=c.lead,
                                    order_by=(named.desc(), c.taken_at.desc(), c.seq.desc()))
    ranked = select(c.lead, c.body, newest.label("n")).where(c.lead.in_(set(leads))).subquery()
    with ledger.engine.connect() as db:
        rows = db.execute(select(ranked.c.lead, ranked.c.body).where(ranked.c.n == 1)).all()
    out = {}
    for lead, body in rows:
        ref = json.loads(body).get("lead") or {}
        who = ref.get("name") or ref.get("email") or ref.get("external_id")
        if isinstance(who, str) and who.strip():
            out[lead] = who.strip()
    return out


def _safe(task_id: str) -> bool:
    try:
        safe_name(task_id, "task")
    except IntakeError:
        return False
    return True


async def task(client: Client, task_id: str) -> dict[str, Any]:
    """One task as the workflow knows it, with the time left on its SLA."""
    view = await _call(client, task_id, None)
    info = view.model_dump(mode="json")
    if view.due_at and view.status in ("open", "escalated"):
        left = datetime.fromisoformat(view.due_at) - datetime.now(timezone.utc)
        info["seconds_left"] = round(left.total_seconds())
    return info


async def accept(client: Client, task_id: str, by: str = "") -> dict[str, Any]:
    view = await _call(client, task_id, lambda h: h.execute_update(
        HandoffWorkflow.accept, AcceptInput(by=by)))
    return view.model_dump(mode="json")


async def reject(client: Client, task_id: str, reason: str, by: str = "") -> dict[str, Any]:
    if not reason.strip():
        raise TaskError("a rejection needs a reason; it goes into the lead's story")
    view = await _call(client, task_id, lambda h: h.execute_update(
        HandoffWorkflow.reject, RejectInput(reason=reason, by=by)))
    return view.model_dump(mode="json")


async def reassign(client: Client, task_id: str, queue: str, by: str = "") -> dict[str, Any]:
    safe_name(queue, "queue")
    view = await _call(client, task_id, lambda h: h.execute_update(
        HandoffWorkflow.reassign, ReassignInput(queue=queue, by=by)))
    return view.model_dump(mode="json")


async def _call(client: Client, task_id: str, update: Callable[[Task], Awaitable[TaskView]] | None
                ) -> TaskView:
    """The task (`update` None), or what it answers to the update made through its handle."""
    if not task_id.startswith("handoff-"):
        raise NoSuchTask(task_id)
    try:
        safe_name(task_id, "task")
    except IntakeError:
        raise NoSuchTask(task_id) from None
    handle = client.get_workflow_handle(task_id)
    try:
        if update is None:
            return await handle.query(HandoffWorkflow.snapshot)
        return await update(handle)
    except WorkflowUpdateFailedError as err:
        raise TaskError(getattr(err.cause, "message", None) or str(err.cause)) from None
    except RPCError as err:
        if err.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise
        if update is not None:  # an answered task has ended: say so, not that there is none
            try:
                done = await handle.query(HandoffWorkflow.snapshot)
            except RPCError:
                raise NoSuchTask(task_id) from None
            raise TaskError(f"task {task_id} is already {done.status}") from None
        raise NoSuchTask(task_id) from None
