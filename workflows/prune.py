"""PruneWorkflow: retention of the shared database, started once a day by the Temporal Schedule
`leadflow-prune` (in the Web UI's Schedules and `temporal schedule list`), which the worker keeps
as the settings ask (leadflow.operations.pruning).

The cutoff is the run's start time less the retention the schedule carries, fixed for the whole
run, so a run that takes long still prunes up to one moment."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from activities.prune import PruneActivities, Pruned, PruneRequest

# a call hands back within its budget (activities.prune.BUDGET_SECONDS): the rest is slack
CALL_TIMEOUT = timedelta(minutes=6)
# a database away for an hour fails the run; the next day's run starts over
RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                    maximum_interval=timedelta(minutes=5), maximum_attempts=15)
RUN_TIMEOUT = timedelta(hours=23)  # a stuck run never stands in the next one's way (SKIP)


class PruneInput(BaseModel):
    """Seconds to keep, per part; None keeps that part whole."""

    events: float | None = None
    deliveries: float | None = None


class PruneResult(BaseModel):
    archive: Pruned = Pruned()
    ledger: Pruned = Pruned()


@workflow.defn(name="PruneWorkflow", sandboxed=False)
class PruneWorkflow:
    @workflow.run
    async def run(self, keep: PruneInput) -> PruneResult:
        now = workflow.now().timestamp()
        result = PruneResult()
        if keep.events is not None:
            result.archive = await _all(PruneActivities.prune_archive, now - keep.events)
        if keep.deliveries is not None:
            result.ledger = await _all(PruneActivities.prune_ledger, now - keep.deliveries)
        return result


async def _all(prune: Callable[[PruneActivities, PruneRequest], Awaitable[Pruned]],
               before: float) -> Pruned:
    """Calls of one activity until it says nothing older than the cutoff is left."""
    total = Pruned()
    while True:
        done = await workflow.execute_activity_method(
            prune, PruneRequest(before=before), start_to_close_timeout=CALL_TIMEOUT,
            heartbeat_timeout=timedelta(minutes=1), retry_policy=RETRY)
        total = total.add(done)
        if done.done:
            return total
