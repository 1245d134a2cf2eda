"""The Temporal Schedule `leadflow-prune` that starts workflows.prune.PruneWorkflow once a day, as
the settings ask: the worker creates or updates it at start when LEADFLOW_RETENTION_EVENTS or
LEADFLOW_RETENTION_DELIVERIES is set, and deletes it when neither is (`schedule_pruning`)."""

from __future__ import annotations

import logging
from datetime import timedelta

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

from leadflow.settings import Settings
from workflows.prune import RUN_TIMEOUT, PruneInput, PruneWorkflow

SCHEDULE_ID = "leadflow-prune"
AT_HOUR = 3  # UTC: the quiet hours of most of the world's working days

log = logging.getLogger("leadflow.prune")


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
