"""Hand-off tasks: list them, read one with the lead's story, and answer it (accept, reject with
a reason, reassign to another queue). Answers are updates: the caller hears at once whether
they counted."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

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
        held_by = desk_rows.get(row["id"]) or {}
        state = held_by.get("status") if held_by.get("status") in ("open", "waiting") else None
        row = {**row, "rep": held_by.get("rep") if state == "open" else None, "assignment": state}
        if rep is not None and row["rep"] != rep:
            continue
        if assigned is not None and (state == "open") != assigned:
            continue
        out.append(row)
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
