"""Retention (LEADFLOW_RETENTION_EVENTS, LEADFLOW_RETENTION_DELIVERIES): the worker makes the
Temporal Schedule `leadflow-prune` at start and deletes it when both are off; a run of
PruneWorkflow (triggered through the schedule, on a real dev server: the time-skipping server
has no schedules) takes the archive's and the ledger's old rows and nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from sqlalchemy import select
from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Replayer

from activities.prune import PruneActivities, PruneRequest
from leadflow.db.database import Database
from leadflow.db.schema import (
    deliveries,
    events,
    mail_reports,
    shadow_decisions,
    shadow_leads,
    suppressions,
    transitions,
)
from leadflow.operations.pruning import SCHEDULE_ID, schedule_pruning
from leadflow.settings import Settings, SettingsError
from tests.support import ROOT
from worker import run_worker
from workflows.prune import PruneResult, PruneWorkflow

DAY = 86400.0
T = TypeVar("T")


def fill(ledger: Database, now: float) -> None:
    """Rows 40 days old and 2 days old of every table retention reads, and a delivery still on
    its way of each unfinished status, 40 days old."""
    with ledger.writing() as db:
        for age, tag in ((40 * DAY, "old"), (2 * DAY, "new")):
            at = now - age
            db.execute(events.insert(), [{"lead": "lead-1", "id": f"{tag}-{i}", "type": "page_view", "at": at,
                                          "taken_at": at, "seq": i, "body": "{}"} for i in range(7)])
            db.execute(transitions.insert(), {"lead": "lead-1", "event_id": f"{tag}-0", "seq": 0, "at": at,
                                              "from_state": "new", "to_state": "engaged", "policy": "p",
                                              "version": 1})
            db.execute(shadow_decisions.insert(), {"sha": "s", "lead": "lead-1", "event_id": f"{tag}-0",
                                                   "at": at, "taken_at": at, "seq": 0, "live": "{}",
                                                   "shadow": "{}"})
            db.execute(shadow_leads.insert(), {"sha": tag, "lead": "lead-1", "state": "{}", "updated_at": at})
            db.execute(suppressions.insert(), {"address_hash": tag, "reason": "unsubscribed", "at": at})
            db.execute(mail_reports.insert(), {"key": f"{tag}-sent", "kind": "hard", "lead": "lead-1",
                                               "at": at})
            for status in ("sent", "failed", "bounced", "suppressed", "skipped", "sending", "retrying"):
                db.execute(deliveries.insert(), {"key": f"{tag}-{status}", "kind": "email", "lead": "lead-1",
                                                 "status": status, "created_at": at, "updated_at": at})


def left(ledger: Database) -> dict[str, list[Any]]:
    with ledger.engine.connect() as db:
        return {"events": sorted(db.execute(select(events.c.id)).scalars()),
                "transitions": sorted(db.execute(select(transitions.c.event_id)).scalars()),
                "shadow_decisions": sorted(db.execute(select(shadow_decisions.c.event_id)).scalars()),
                "shadow_leads": sorted(db.execute(select(shadow_leads.c.sha)).scalars()),
                "suppressions": sorted(db.execute(select(suppressions.c.address_hash)).scalars()),
                "mail_reports": sorted(db.execute(select(mail_reports.c.key)).scalars()),
                "deliveries": sorted(db.execute(select(deliveries.c.key)).scalars())}


# what a 30-day retention leaves of fill(): the new rows, the old suppression, and the old
# deliveries still on their way
KEPT = {"events": [f"new-{i}" for i in range(7)], "transitions": ["new-0"], "shadow_decisions": ["new-0"],
        "shadow_leads": ["new"], "suppressions": ["new", "old"], "mail_reports": ["new-sent"],
        "deliveries": sorted(["old-retrying", "old-sending"] + [f"new-{s}" for s in (
            "sent", "failed", "bounced", "suppressed", "skipped", "sending", "retrying")])}


async def schedules(client: Client) -> list[str]:
    return [s.id async for s in await client.list_schedules()]


async def beside(worker: asyncio.Task[None], waited: Awaitable[T], seconds: float = 20) -> T:
    """What `waited` gives, while the worker runs: a worker that stopped fails the test at once
    with its own error, not by a timeout later."""
    task = asyncio.ensure_future(waited)
    done, _ = await asyncio.wait({task, worker}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    if task not in done:
        task.cancel()
        worker.result() if worker.done() else None
        raise AssertionError("the worker stopped" if worker.done() else f"nothing after {seconds} s")
    return task.result()


async def until(check: Callable[[], Awaitable[Any]]) -> Any:
    while not (found := await check()):
        await asyncio.sleep(0.1)
    return found


def test_the_worker_schedules_pruning_which_takes_old_rows_only(tmp_path, shared_server):
    space = shared_server.space("prune")

    async def scenario() -> None:
        client = await space.client()
        on = Settings(home=tmp_path, policy_dir=ROOT / "policies", content_dir_setting=ROOT / "content",
                      task_queue=space.task_queue, eval_processes=0, delivery_processes=0, delivery_timeout=1,
                      retention_events=30 * DAY, retention_deliveries=30 * DAY)
        ledger = Database.of(on)
        fill(ledger, time.time())
        worker = asyncio.create_task(run_worker(on, client))
        try:
            await beside(worker, until(lambda: _listed(client)))
            schedule = client.get_schedule_handle(SCHEDULE_ID)
            action = (await schedule.describe()).schedule.action
            assert isinstance(action, ScheduleActionStartWorkflow)
            assert (action.workflow, action.task_queue) == ("PruneWorkflow", space.task_queue)
            await schedule.trigger()
            recent = await beside(worker, until(lambda: _recent(schedule)))
            run = client.get_workflow_handle(recent[0].action.workflow_id, result_type=PruneResult)
            result = await beside(worker, run.result())
            await Replayer(workflows=[PruneWorkflow], data_converter=pydantic_data_converter).replay_workflow(
                await run.fetch_history())
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        assert left(ledger) == KEPT
        assert result.archive.rows == {"events": 7, "transitions": 1, "shadow_decisions": 1,
                                       "shadow_leads": 1}
        assert result.ledger.rows == {"deliveries": 5, "mail_reports": 1}
        # a worker started again changes the schedule, not adds one, and leaves ops' pause be
        await schedule.pause(note="paused by ops")
        assert await schedule_pruning(client, on) == "updated"
        assert (await schedules(client)).count(SCHEDULE_ID) == 1
        assert (await schedule.describe()).schedule.state.paused
        off = Settings(home=tmp_path, task_queue=space.task_queue)
        assert await schedule_pruning(client, off) == "deleted"
        assert SCHEDULE_ID not in await schedules(client)
        assert await schedule_pruning(client, off) == "none"
        ledger.close()

    asyncio.run(scenario())


async def _listed(client: Client) -> bool:
    return SCHEDULE_ID in await schedules(client)


async def _recent(schedule: ScheduleHandle) -> list[Any]:
    return list((await schedule.describe()).info.recent_actions)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_batches_stop_at_the_cutoff_whatever_the_batch(tmp_path, backend):
    """Batches of 2 rows: each table takes several, and the last finds the cutoff; on PostgreSQL
    rows are named by their primary key, not SQLite's rowid."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'leadflow.sqlite'}"
    else:
        from tests.support.pg import new_database

        url = new_database()
    ledger = Database.open(url)
    try:
        now = time.time()
        fill(ledger, now)
        acts = PruneActivities(ledger)
        before = now - 30 * DAY
        by_two = PruneRequest(before=before, batch=2)
        archive = asyncio.run(ActivityEnvironment().run(acts.prune_archive, by_two))
        ledger_done = asyncio.run(ActivityEnvironment().run(acts.prune_ledger, by_two))
        assert archive.rows["events"] == 7 and archive.batches == 4 + 1 + 1 + 1
        assert ledger_done.rows == {"deliveries": 5, "mail_reports": 1} and ledger_done.done
        assert left(ledger) == KEPT
        # a budget spent hands back with rows left; the next call goes on from there
        fill_more = [{"lead": "lead-2", "id": f"x{i}", "type": "page_view", "at": before - 1, "taken_at": 0,
                      "seq": 0, "body": "{}"} for i in range(6)]
        with ledger.writing() as db:
            db.execute(events.insert(), fill_more)
        cut = asyncio.run(ActivityEnvironment().run(acts.prune_archive, PruneRequest(before=before, batch=2,
                                                                                     budget=0)))
        assert not cut.done and cut.rows == {"events": 2}
        rest = asyncio.run(ActivityEnvironment().run(acts.prune_archive, by_two))
        assert rest.done and rest.rows == {"events": 4}
    finally:
        ledger.close()


@pytest.mark.parametrize("given, want", [("", None), ("400d", 400 * DAY), ("2w", 14 * DAY), ("1d", DAY)])
def test_retention_settings_read_durations_and_unset_keeps_everything(given, want):
    s = Settings.from_env({"LEADFLOW_RETENTION_EVENTS": given, "LEADFLOW_RETENTION_DELIVERIES": given})
    assert (s.retention_events, s.retention_deliveries) == (want, want)


@pytest.mark.parametrize("given", ["0", "0s", "0d", "12h", "forever"])
def test_retention_under_a_day_or_unreadable_is_refused(given):
    with pytest.raises(SettingsError, match="LEADFLOW_RETENTION_EVENTS"):
        Settings.from_env({"LEADFLOW_RETENTION_EVENTS": given})
