"""The baseline for bench/e2e.py: a bare workflow that only counts events, in its own worker."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    def __init__(self) -> None:
        self.count = 0

    @workflow.run
    async def run(self, first: Any) -> None:
        self.count = 1
        await workflow.wait_condition(lambda: False)

    @workflow.signal(name="event")
    def event(self, raw: Any) -> None:
        self.count += 1

    @workflow.update(name="submit")
    def submit(self, raw: Any) -> int:
        self.count += 1
        return self.count

    @workflow.query(name="count")
    def counted(self) -> int:
        return self.count


async def main() -> None:
    client = await Client.connect(os.environ["TEMPORAL_ADDRESS"])
    await Worker(client, task_queue="bare", workflows=[BareWorkflow]).run()


if __name__ == "__main__":
    asyncio.run(main())
