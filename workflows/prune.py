"""PruneWorkflow: retention of the shared database, started once a day by the Temporal Schedule
`leadflow-prune` (in the Web UI's Schedules and `temporal schedule list`). The worker creates or
updates the schedule at start when LEADFLOW_RETENTION_EVENTS or LEADFLOW_RETENTION_DELIVERIES is
set, and deletes it when neither is (`schedule_pruning`).

The cutoff is the run's start time less the retention the schedule carries, fixed for the whole
run, so a run that takes long still prunes up to one moment."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel
    from temporalio.client import (
        Client,
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleAlreadyRunningError,
        ScheduleCalendarSpec,
        ScheduleOverlapPolicy,
        SchedulePolicy,
        ScheduleRange,
        ScheduleSpec,
        ScheduleUpdate,
        ScheduleUpdateInput,
    )
    from temporalio.service import RPCError, RPCStatusCode

    from activities.prune import PruneActivities, Pruned, PruneRequest
    from leadflow.settings import Settings

SCHEDULE_ID = "leadflow-prune"
AT_HOUR = 3  # UTC: the quiet hours of most of the world's working days
# a call hands back within its budget (activities.prune.BUDGET_SECONDS): the rest is slack
CALL_TIMEOUT = timedelta(minutes=6)
# a database away for an hour fails the run; the next day's run starts over
RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                    maximum_interval=timedelta(minutes=5), maximum_attempts=15)
RUN_TIMEOUT = timedelta(hours=23)  # a stuck run never stands in the next one's way (SKIP)

log = logging.getLogger("leadflow.prune")


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


def schedule_of(settings: Settings) -> Schedule:
    keep = PruneInput(events=settings.retention_events, deliveries=settings.retention_deliveries)
    return Schedule(
        action=ScheduleActionStartWorkflow(PruneWorkflow.run, keep, id=SCHEDULE_ID,
                                           task_queue=settings.task_queue, execution_timeout=RUN_TIMEOUT),
        spec=ScheduleSpec(calendars=[ScheduleCalendarSpec(hour=[ScheduleRange(AT_HOUR)],
                                                          comment="leadflow retention, daily")]),
        # a run still pruning at the next day's time is let finish, not doubled; a server that
        # was down at the hour starts the day's run when it is back within the day
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(hours=20)))


async def schedule_pruning(client: Client, settings: Settings) -> str:
    """The schedule as settings ask: `created`, `updated`, `deleted`, `none`, or `failed` (logged
    as an error: a namespace that refuses schedules, say, must not keep the worker from taking
    leads). Every worker does this at start; the last to start says what runs, and workers
    started together agree as long as they share their settings. A schedule ops paused stays
    paused."""
    try:
        return await _schedule(client, settings)
    except RPCError as err:
        if settings.retention_events is None and settings.retention_deliveries is None:
            # nothing asked for: a server without schedules (the time-skipping test server) or
            # a key that may not see them has none of ours to delete either
            log.warning("retention off; schedule %s not looked for: %s", SCHEDULE_ID, err)
        else:
            log.error("retention: schedule %s not made as LEADFLOW_RETENTION_* ask: %s", SCHEDULE_ID, err)
        return "failed"


async def _schedule(client: Client, settings: Settings) -> str:
    handle = client.get_schedule_handle(SCHEDULE_ID)
    if settings.retention_events is None and settings.retention_deliveries is None:
        try:
            await handle.delete()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return "none"
        log.info("retention off: schedule %s deleted", SCHEDULE_ID)
        return "deleted"
    schedule = schedule_of(settings)
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
        how = "created"
    except ScheduleAlreadyRunningError:
        def keep_state(given: ScheduleUpdateInput) -> ScheduleUpdate:
            schedule.state = given.description.schedule.state
            return ScheduleUpdate(schedule=schedule)

        await handle.update(keep_state)
        how = "updated"
    log.info("retention: schedule %s %s (events %s, deliveries %s)", SCHEDULE_ID, how,
             _days(settings.retention_events), _days(settings.retention_deliveries))
    return how


def _days(seconds: float | None) -> str:
    return "kept" if seconds is None else f"{seconds / 86400:g}d"
