"""Hand-off tasks: list, read (with the lead's story and why it is sales-ready), accept, reject
(a reason is required), reassign."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from leadflow.api.deps import ERRORS, Ctx, ReaderOfTasks, ReadsTasks, WorkerOfTasks, answer, unprocessable
from leadflow.operations import tasks

router = APIRouter(prefix="/v1", tags=["tasks"], responses={**ERRORS, 404: answer("no such task"),
                                                            409: answer("the task refused the answer")})


class Accept(BaseModel):
    by: str = Field("", max_length=200)


class Reject(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S")
    by: str = Field("", max_length=200)


class Reassign(BaseModel):
    queue: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.@+-]+$")
    by: str = Field("", max_length=200)


@router.get("/tasks", summary="Tasks by queue, status (open and escalated unless asked; `all`) and rep, "
                              "each with its rep and assignment (open, or waiting for a free rep)")
async def list_tasks(ctx: Ctx, caller: ReaderOfTasks, queue: str | None = None, status: str | None = None,
                     rep: str | None = Query(None, max_length=200, description="a rep's tasks: a rep id, or "
                                             "`me` for the person the key names (role/rep:key)"),
                     assigned: bool | None = Query(None, description="false: only tasks waiting for a rep; "
                                                   "true: only tasks a rep holds"),
                     ) -> dict[str, list[dict[str, Any]]]:
    if rep == "me":
        if caller.person is None:
            raise unprocessable("query.rep", "this key names no person (a key written role/rep:key does); "
                                             "ask for a rep id instead")
        rep = caller.person
    return {"tasks": await tasks.assigned_tasks(ctx.client, ctx.desk, queue, status, rep, assigned)}


@router.get("/tasks/{task_id}", summary="A task with the lead's story and why it is sales-ready")
async def get_task(task_id: str, ctx: Ctx, _: ReadsTasks) -> dict[str, Any]:
    return await task_answer(tasks.task(ctx.client, task_id), task_id)


# the person the key names answers (a `by` naming anyone else is refused); a key naming nobody
# answers as the body's `by`
@router.post("/tasks/{task_id}/accept")
async def accept_task(task_id: str, body: Accept, ctx: Ctx, caller: WorkerOfTasks) -> dict[str, Any]:
    return await task_answer(tasks.accept(ctx.client, task_id, _by(body.by, caller.person)), task_id)


@router.post("/tasks/{task_id}/reject")
async def reject_task(task_id: str, body: Reject, ctx: Ctx, caller: WorkerOfTasks) -> dict[str, Any]:
    return await task_answer(tasks.reject(ctx.client, task_id, body.reason, _by(body.by, caller.person)),
                             task_id)


@router.post("/tasks/{task_id}/reassign")
async def reassign_task(task_id: str, body: Reassign, ctx: Ctx, caller: WorkerOfTasks) -> dict[str, Any]:
    return await task_answer(tasks.reassign(ctx.client, task_id, body.queue, _by(body.by, caller.person)),
                             task_id)


def _by(given: str, person: str | None) -> str:
    """Who answers: the key's person when it names one (a body cannot answer as someone else),
    else who the body says."""
    if person is None:
        return given.strip()
    if given.strip() and given.strip().lower() != person.lower():
        raise HTTPException(403, f"this key is {person}'s; it answers as {person} only (leave `by` empty)")
    return person


async def task_answer(call: Any, task_id: str) -> dict[str, Any]:
    """A task operation's answer, or the 404 or 409 it comes to (the CRM's routes use it too)."""
    try:
        answer: dict[str, Any] = await call
        return answer
    except tasks.NoSuchTask:
        raise HTTPException(404, f"no task {task_id!r}") from None
    except tasks.TaskError as err:
        raise HTTPException(409, str(err)) from None
