"""A person's workflows in Temporal: their leads' runs (every run of each id, earlier runs ended
by continue-as-new or a final state included) and their hand-off tasks, found and deleted.

Deleting a running execution terminates it first (Temporal does both in one call); the history,
its visibility row and its mutable state go, asynchronously, so `delete` waits until the server
no longer knows any of them. Payloads there are encrypted by the codec; what deleting removes
besides is the plain part: workflow ids (a hash of the address), search attributes and memo."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable

from sqlalchemy import select
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from leadflow.db.database import Database
from leadflow.db.schema import deliveries, task_assignments
from leadflow.temporal import described

GAP = 3  # hand-off numbers probed past the last one found: numbers are given in turn from 1
WAIT = 60.0  # seconds the server may take to let go of a deleted execution
_ID = re.compile(r"^[A-Za-z0-9_.@+:-]{1,300}$")


async def task_ids(client: Client, ledger: Database, leads: Iterable[str]) -> list[str]:
    """Every hand-off task of these leads: `handoff-<lead>-<n>` numbered from 1 in turn (a
    merged lead's tasks keep its id when relinked), and any the routing or the ledger names."""
    leads = list(leads)
    found: list[str] = []
    for lead in leads:
        n, misses = 1, 0
        while misses < GAP:
            task = f"handoff-{lead}-{n}"
            if await exists(client, task):
                found.append(task)
                misses = 0
            else:
                misses += 1
            n += 1
    t, d = task_assignments.c, deliveries.c

    def named() -> list[str]:
        with ledger.engine.connect() as db:
            routed = db.execute(select(t.task).where(t.lead.in_(leads))).scalars().all()
            told = db.execute(select(d.subject).where(
                d.lead.in_(leads), d.kind.in_(("handoff", "escalation")))).scalars().all()
        return [*routed, *told]

    for task in await asyncio.to_thread(named):
        if task.startswith("handoff-") and task not in found:
            found.append(task)
    return found


async def exists(client: Client, workflow_id: str) -> bool:
    return await _current_run(client, workflow_id) is not None


async def _runs(client: Client, workflow_id: str) -> list[str]:
    """The run ids visibility lists for a workflow id: its current run and the closed ones."""
    if not _ID.match(workflow_id):  # it goes into a visibility query
        raise ValueError(f"{workflow_id!r} is not a lead's or a task's workflow id")
    return [wf.run_id async for wf in client.list_workflows(f"WorkflowId = '{workflow_id}'")]


async def delete(client: Client, workflow_ids: Iterable[str], wait: float = WAIT) -> int:
    """Terminate and delete every run of each workflow id; the number of runs deleted. Waits
    until none is left (describe and visibility both say so), else raises TimeoutError."""
    ids = list(dict.fromkeys(workflow_ids))
    deleted: set[tuple[str, str]] = set()
    deadline = time.monotonic() + wait
    while True:
        left = False
        for workflow_id in ids:
            runs = await _runs(client, workflow_id)
            current = await _current_run(client, workflow_id)
            if current is not None and current not in runs:
                runs.append(current)
            for run in runs:
                left = True
                if (workflow_id, run) not in deleted or time.monotonic() > deadline - wait / 2:
                    await _delete(client, workflow_id, run)
                    deleted.add((workflow_id, run))
        if not left:
            return len(deleted)
        if time.monotonic() > deadline:
            raise TimeoutError(f"Temporal still holds runs of {len(ids)} workflows after {wait:.0f} s")
        await asyncio.sleep(0.5)


async def _current_run(client: Client, workflow_id: str) -> str | None:
    found = await described(client, workflow_id)
    return found.run_id if found is not None else None


async def _delete(client: Client, workflow_id: str, run_id: str) -> None:
    try:
        await client.workflow_service.delete_workflow_execution(DeleteWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id)))
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:  # gone meanwhile: what was wanted
            raise
