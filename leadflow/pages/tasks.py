"""A task with the lead's story, and its answers: accept, reject with a reason, pass it to another
queue."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from leadflow.api.context import Context
from leadflow.api.deps import Ctx
from leadflow.intake import IntakeError
from leadflow.keys import allowed
from leadflow.operations import leads as lead_ops
from leadflow.operations import tasks as task_ops
from leadflow.pages.deps import FormText, LoggedIn, PageCaller, TaskWorker, missing_on
from leadflow.pages.render import left, render, timeline

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


@router.get("/tasks/{task_id}")
async def task_page(request: Request, task_id: str, caller: LoggedIn, ctx: Ctx) -> Response:
    return await _task_view(request, ctx, caller, task_id)


@router.post("/tasks/{task_id}/accept")
async def accept(request: Request, task_id: str, caller: TaskWorker, ctx: Ctx, by: FormText = "") -> Response:
    return await _answered(request, ctx, caller, task_id,
                           task_ops.accept(ctx.client, task_id, caller.answering(by)))


@router.post("/tasks/{task_id}/reject")
async def reject(request: Request, task_id: str, caller: TaskWorker, ctx: Ctx, reason: FormText = "",
                 by: FormText = "") -> Response:
    return await _answered(request, ctx, caller, task_id,
                           task_ops.reject(ctx.client, task_id, reason, caller.answering(by)))


@router.post("/tasks/{task_id}/reassign")
async def reassign(request: Request, task_id: str, caller: TaskWorker, ctx: Ctx, queue: FormText = "",
                   by: FormText = "") -> Response:
    return await _answered(request, ctx, caller, task_id,
                           task_ops.reassign(ctx.client, task_id, queue.strip(), caller.answering(by)))


async def _answered(request: Request, ctx: Context, caller: PageCaller, task_id: str,
                    answer: Awaitable[dict[str, Any]]) -> Response:
    """The task's page once it took the answer; the page again with why, when it refused it."""
    try:
        with missing_on(task_ops.NoSuchTask, f"task {task_id}"):
            await answer
    except (task_ops.TaskError, IntakeError) as err:
        return await _task_view(request, ctx, caller, task_id, error=str(err), status=422)
    return RedirectResponse(f"/tasks/{task_id}", status_code=303)


async def _task_view(request: Request, ctx: Context, caller: PageCaller, task_id: str,
                     error: str | None = None, status: int = 200) -> Response:
    with missing_on(task_ops.NoSuchTask, f"task {task_id}"):
        task = await task_ops.task(ctx.client, task_id)
    lead = await lead_ops.lead(ctx.client, task["lead_workflow_id"]) if task.get("lead_workflow_id") else None
    task["left"] = left(task.get("seconds_left"))
    return render(request, "task.html", status=status, task=task, lead=lead, error=error,
                  story=timeline((lead or {}).get("story") or task["lead_story"].get("story", [])),
                  works=allowed(caller.role, "work_tasks") and task["status"] in ("open", "escalated"))
