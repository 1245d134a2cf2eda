"""The baselines for bench/e2e.py, in their own worker: a bare workflow that only counts events,
and the same with one no-op local activity per answered event. LeadWorkflow must run its
evaluator as a local activity, so the second is the floor of what it can reach."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

# About the size of a Decision with its lead, so the floor carries what LeadWorkflow carries.
DECISION_LIKE = {f"field{i}": "x" * 24 for i in range(64)}


@activity.defn(name="noop")
async def noop(raw: Any) -> dict[str, str]:
    return DECISION_LIKE


class _Counter:
    """What both baselines share: they count every event, signalled or submitted."""

    def __init__(self) -> None:
        self.count = 0

    async def _run(self) -> None:
        self.count = 1
        await workflow.wait_condition(lambda: False)

    @workflow.signal(name="event")
    def event(self, raw: Any) -> None:
        self.count += 1

    @workflow.query(name="count")
    def counted(self) -> int:
        return self.count


@workflow.defn(name="BareWorkflow")
class BareWorkflow(_Counter):
    @workflow.run
    async def run(self, first: Any) -> None:
        await self._run()

    @workflow.update(name="submit")
    def submit(self, raw: Any) -> int:
        self.count += 1
        return self.count


@workflow.defn(name="LocalActivityWorkflow")
class LocalActivityWorkflow(_Counter):
    @workflow.run
    async def run(self, first: Any) -> None:
        await self._run()

    @workflow.update(name="submit")
    async def submit(self, raw: Any) -> dict[str, str]:
        answer = await workflow.execute_local_activity(noop, raw,
                                                       start_to_close_timeout=timedelta(seconds=30))
        self.count += 1
        return answer


async def main() -> None:
    client = await Client.connect(os.environ["TEMPORAL_ADDRESS"])
    await Worker(client, task_queue="bare", workflows=[BareWorkflow, LocalActivityWorkflow],
                 activities=[noop]).run()


if __name__ == "__main__":
    asyncio.run(main())
