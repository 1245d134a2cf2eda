"""Activities of sales routing: which rep takes a hand-off task, and freeing the rep's place when
the task is answered. The Desk (the shared database) decides; the workflow records the answer."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import cast

from pydantic import BaseModel, Field
from temporalio import activity
from typing_extensions import TypedDict  # pydantic takes typing's TypedDict only from Python 3.12

from leadflow.routing.desk import Desk


class AssignRequest(BaseModel):
    task: str
    queue: str
    lead: str
    at: datetime  # the workflow's time: away windows are read against it
    exclude: list[str] = Field(default_factory=list)


class ReleaseRequest(BaseModel):
    task: str
    at: datetime


class Assignment(TypedDict, total=False):
    """Who holds a task now (assign_rep's answer): a rep, or why none is free. A TypedDict, not a
    model: the keys are the Desk's, present as it gives them (leadflow.routing.desk.Desk.assign),
    so the answer recorded in a task's history is the JSON it always was."""

    rep: str | None  # None: no rep free, or the task is closed
    name: str
    email: str
    queue: str
    waiting: bool  # no rep free: the task waits in its queue
    closed: bool  # answered meanwhile: nobody to assign
    kept: bool  # passed on at a breach, but nobody else is free: it stays with its rep
    why: str  # why no (other) rep is free
    back_at: str | None  # the first rep of the queue back from away (ISO time)


class RoutingActivities:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    @activity.defn(name="assign_rep")
    async def assign_rep(self, request: AssignRequest) -> Assignment:
        answer = await asyncio.to_thread(self.desk.assign, request.task, request.queue, request.lead,
                                         request.at, tuple(request.exclude))
        return cast(Assignment, answer)  # as the Desk gives it (see Assignment)

    @activity.defn(name="release_rep")
    async def release_rep(self, request: ReleaseRequest) -> list[str]:
        return await asyncio.to_thread(self.desk.release, request.task, request.at)
