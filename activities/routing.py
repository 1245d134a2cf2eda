"""Activities of sales routing: which rep takes a hand-off task, and freeing the rep's place when
the task is answered. The Desk (the shared database) decides; the workflow records the answer."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from temporalio import activity

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


class RoutingActivities:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    @activity.defn(name="assign_rep")
    async def assign_rep(self, request: AssignRequest) -> dict[str, Any]:
        return await asyncio.to_thread(self.desk.assign, request.task, request.queue, request.lead,
                                       request.at, tuple(request.exclude))

    @activity.defn(name="release_rep")
    async def release_rep(self, request: ReleaseRequest) -> list[str]:
        return await asyncio.to_thread(self.desk.release, request.task, request.at)
