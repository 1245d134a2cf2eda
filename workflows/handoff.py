"""HandoffWorkflow: a sales task for one sales-ready lead, with the lead's story and an SLA.
Sales accept or reject it (updates, so the caller hears at once whether it counted); a breach
of the SLA escalates to the policy's escalation queue and is recorded. The answer goes back to
the lead as a `sales_accept` / `sales_reject` event. The task and each escalation go to the
CRM's webhook (workflows.delivery); a CRM that refuses one is recorded in the task's log and the
lead's story."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from activities.delivery import WebhookRequest
    from activities.routing import Assignment, AssignRequest, ReleaseRequest, RoutingActivities
    from rules import lifecycle
    from rules.lifecycle import MAX_ESCALATIONS

    # The lead starts its hand-offs and signals them; a hand-off signals its lead: each module
    # takes the other whole and reads the class at call time, so either may be imported first.
    from workflows import delivery, lead, search
    from workflows.types import (
        AcceptInput,
        HandoffInput,
        Note,
        RawEvent,
        ReassignInput,
        RejectInput,
        TaskView,
        Withdrawal,
    )

# Tasks begun before routing had no rep and escalated at every breach: they replay as they ran.
ROUTING = "routing-reps"
# Tasks begun before their due time was indexed upsert only their queue and status.
DUE_INDEXED = "task-due-indexed"
ROUTING_TIMEOUT = timedelta(seconds=30)
MAX_RETRY_SECONDS = 6 * 3600.0  # a waiting task looks at its queue at least this often


def _lead(workflow_id: str) -> workflow.ExternalWorkflowHandle[lead.LeadWorkflow]:
    """The task's lead, to signal."""
    return workflow.get_external_workflow_handle_for(lead.LeadWorkflow.run, workflow_id)


async def _tell(workflow_id: str, event: RawEvent) -> None:
    """Send the lead an event of the task's (an answer, a breach): the lead checks it as any other."""
    await _lead(workflow_id).signal(lead.LeadWorkflow.event, event)


@workflow.defn(name="HandoffWorkflow", sandboxed=False)
class HandoffWorkflow:
    def __init__(self) -> None:
        self.task: HandoffInput | None = None
        self.queue = ""
        self.status = "open"
        self.answer: dict[str, Any] | None = None
        self.log: list[dict[str, Any]] = []
        self.due_at: str | None = None
        self._pushing: set[asyncio.Task[None]] = set()
        self._real_delivery = True
        self.rep: dict[str, Any] | None = None  # who holds the task: {rep, name, email}
        self.waiting: str | None = None  # why no rep holds it, while none does
        self._wake = False  # a rep may be free: look at the queue again
        self._reroute = False  # moved to another queue: find a rep there
        self._back_at: datetime | None = None  # the first rep of the queue back from away

    @workflow.run
    async def run(self, task: HandoffInput) -> TaskView:
        self.task = task
        self.queue = task.queue
        self._real_delivery = workflow.patched(delivery.REAL_DELIVERY)  # first, see LeadWorkflow.run
        if workflow.patched(ROUTING):
            return await self._run_routed(task)
        self._record("created", queue=task.queue, reason=task.reason)
        self._index()
        breaches = 0
        self.due_at = (workflow.now() + timedelta(seconds=task.sla_seconds)).isoformat()
        await self._push("handoff", f"{self._id()}|created", self._id(), {"event": "handoff.created"})
        while self.answer is None:
            timeout: float | None = task.sla_seconds if breaches < MAX_ESCALATIONS else None
            if timeout is not None:
                self.due_at = (workflow.now() + timedelta(seconds=timeout)).isoformat()
            try:
                await workflow.wait_condition(lambda: self.answer is not None, timeout=timeout)
            except asyncio.TimeoutError:
                breaches += 1
                await self._breach(breaches)
        self._index()
        await _tell(task.lead_workflow_id,
                    lifecycle.answer_event(self._id(), self.status, self.answer, workflow.now()))
        # a webhook still retrying belongs to this task: it ends when the CRM has answered
        await workflow.wait_condition(lambda: not self._pushing)
        return self.snapshot()

    async def _run_routed(self, task: HandoffInput) -> TaskView:
        """The task goes to a rep of its queue (the roster's weighted round robin); with none
        free it waits in the queue until one is. Each SLA breach takes the policy's next step:
        pass the task to the next free rep, or escalate it to another queue."""
        self._record("created", queue=task.queue, reason=task.reason, route=task.route)
        cycle = lifecycle.TaskCycle(self._id(), task.queue, task.sla_seconds,
                                    lifecycle.breach_steps(task.escalate_to, task.breach_steps),
                                    lifecycle.next_breach(workflow.now(), task.sla_seconds, 0))
        self.due_at = cycle.due.isoformat() if cycle.due else None
        self._index()
        self._count("opened")
        await self._assign(())
        await self._push("handoff", f"{self._id()}|created", self._id(), {"event": "handoff.created"})
        retry_at: datetime | None = None
        backoff = task.routing_retry
        while self.answer is None:
            if self.rep is None and retry_at is None:
                # a place that frees wakes the task, and so does a roster change made through the
                # API or the pages; this catches the rest (the file edited), less often as it waits
                retry_at = workflow.now() + timedelta(seconds=backoff)
                if self._back_at is not None and workflow.now() < self._back_at < retry_at:
                    retry_at = self._back_at  # a rep of the queue is back then
                backoff = min(backoff * 2, MAX_RETRY_SECONDS)
            dues = [d for d in (cycle.due, retry_at if self.rep is None else None) if d is not None]
            left = (min(dues) - workflow.now()).total_seconds() if dues else None
            if left is None or left > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await workflow.wait_condition(
                        lambda: self.answer is not None or self._wake or self._reroute, timeout=left)
            if self.answer is not None:
                break
            retry_due = retry_at is not None and workflow.now() >= retry_at
            if self._reroute or (self.rep is None and (self._wake or retry_due)):
                self._reroute, retry_at = False, None
                await self._assign(())
                if self.rep is not None:
                    backoff = task.routing_retry
            self._wake = False
            if cycle.due is not None and workflow.now() >= cycle.due:
                cycle.queue = self.queue  # sales may have passed it to another queue meanwhile
                taken = lifecycle.breach(cycle, workflow.now())
                # past the last breach there is no next: the task stays overdue since the last
                self.due_at = cycle.due.isoformat() if cycle.due else self.due_at
                await self._breach_step(taken)
        self._index()
        self._count(self.status)
        waiting = await workflow.execute_activity_method(
            RoutingActivities.release_rep, ReleaseRequest(task=self._id(), at=workflow.now()),
            start_to_close_timeout=ROUTING_TIMEOUT)
        for other in waiting:  # a place is free: the tasks waiting in the queue look again
            with contextlib.suppress(Exception):  # answered meanwhile: nothing to wake
                await workflow.get_external_workflow_handle_for(HandoffWorkflow.run, other).signal(
                    HandoffWorkflow.wake)
        if self.status != "withdrawn":  # a withdrawn task has no answer for its lead
            lead_id = self.task.lead_workflow_id if self.task else task.lead_workflow_id  # relinked, maybe
            await _tell(lead_id, lifecycle.answer_event(self._id(), self.status, self.answer, workflow.now()))
        await workflow.wait_condition(lambda: not self._pushing)
        return self.snapshot()

    async def _assign(self, exclude: tuple[str, ...]) -> Assignment:
        """Ask the roster who takes the task now; say it in the task's log and the lead's story."""
        assert self.task is not None
        before = self.rep
        got = await workflow.execute_activity_method(
            RoutingActivities.assign_rep,
            AssignRequest(task=self._id(), queue=self.queue, lead=self.task.lead_workflow_id,
                          at=workflow.now(), exclude=list(exclude)),
            start_to_close_timeout=ROUTING_TIMEOUT)
        if got.get("closed"):
            return got
        if got.get("rep"):
            self.rep = {k: got.get(k) or "" for k in ("rep", "name", "email")}
            self.waiting = None
            if before is None or before["rep"] != got["rep"]:
                self._record("assigned", rep=got["rep"], queue=self.queue, route=self.task.route,
                             from_rep=before["rep"] if before else None)
                who = f"{got['rep']} ({got['name']})" if got.get("name") else got["rep"]
                how = f" by routing rule {self.task.route}" if self.task.route and before is None else ""
                await self._tell_lead(f"hand-off {self._id()} assigned to {who} in queue {self.queue}{how}")
        else:
            back = got.get("back_at")
            self._back_at = datetime.fromisoformat(back) if back else None
            why = str(got.get("why") or "no rep free")
            if self.rep is not None or self.waiting is None:
                self._record("waiting", queue=self.queue, why=why)
                await self._tell_lead(f"hand-off {self._id()} waits in queue {self.queue}: {why}")
            self.rep, self.waiting = None, why
        return got

    def _count(self, what: str) -> None:
        """Hand-offs opened, accepted, rejected, withdrawn and breached, by queue (not on replay)."""
        workflow.metric_meter().create_counter(
            "leadflow_handoffs", "Hand-off tasks opened, answered and breached, by queue").add(
            1, {"event": what, "queue": self.queue})

    async def _breach_step(self, taken: lifecycle.Breach) -> None:
        """An SLA breach: the step the lifecycle took (or, past the policy's last, only the record)."""
        assert self.task is not None
        self._count("breached")
        n, step = taken.n, taken.step
        previous_queue, previous_rep = self.queue, (self.rep or {}).get("rep")
        if step == "reassign":
            self._record("sla_breach", breach=n, step="reassign", from_rep=previous_rep, queue=self.queue)
            got = await self._assign((previous_rep,) if previous_rep else ())
            if self.rep is None or self.rep["rep"] == previous_rep:
                self.log[-1]["why"] = f"no other rep free ({got.get('why', '')})"
        else:
            self.queue = taken.queue
            if taken.target:
                self.status = "escalated"
            self._record("sla_breach", breach=n, step=step, from_queue=previous_queue, queue=self.queue)
            if self.queue != previous_queue:
                await self._assign(())
        self._index()
        rep = (self.rep or {}).get("rep")
        await self._push("escalation", f"{self._id()}|breach|{n}", f"{self._id()}:breach:{n}", {
            "event": "handoff.escalated",
            "escalation": {"breach": n, "step": step, "from_queue": previous_queue,
                           "queue": self.queue, "from_rep": previous_rep, "rep": rep}})
        await _tell(self.task.lead_workflow_id,
                    lifecycle.breach_event(self._id(), taken, workflow.now(), rep=rep, from_rep=previous_rep))

    async def _tell_lead(self, why: str) -> None:
        assert self.task is not None
        await _lead(self.task.lead_workflow_id).signal(lead.LeadWorkflow.note,
                                                       Note(type="handoff", why=why))

    @workflow.signal(name="relink")
    def relink(self, lead_workflow_id: str) -> None:
        """The lead was merged into another: the answer goes there from now on."""
        if self.task is not None and lead_workflow_id and lead_workflow_id != self.task.lead_workflow_id:
            self._record("relinked", from_lead=self.task.lead_workflow_id, lead=lead_workflow_id)
            self.task = self.task.model_copy(update={"lead_workflow_id": lead_workflow_id})

    @workflow.signal(name="withdraw")
    def withdraw(self, why: Withdrawal) -> None:
        """Nobody needs to answer it any more (its lead merged into one with its own task)."""
        if self.answer is None:
            reason = why.reason or "withdrawn"
            self.answer = {"status": "withdrawn", "reason": reason}
            self.status = "withdrawn"
            self._record("withdrawn", reason=reason)

    @workflow.signal(name="wake")
    def wake(self) -> None:
        """A place may have freed in the queue (another task was answered)."""
        self._wake = True

    async def _breach(self, n: int) -> None:
        assert self.task is not None
        escalate_to = self.task.escalate_to
        previous = self.queue
        if escalate_to and self.queue != escalate_to:
            self.queue = escalate_to
        self.status = "escalated"
        self._record("sla_breach", breach=n, from_queue=previous, queue=self.queue)
        self._index()
        await self._push("escalation", f"{self._id()}|breach|{n}", f"{self._id()}:breach:{n}", {
            "event": "handoff.escalated",
            "escalation": {"breach": n, "from_queue": previous, "queue": self.queue}})
        await _tell(self.task.lead_workflow_id, {
            "id": f"{self._id()}:breach:{n}", "type": "sla_breach", "at": workflow.now().isoformat(),
            "data": {"queue": self.queue, "breach": n, "task": self._id()}})

    @workflow.update(name="accept")
    def accept(self, answer: AcceptInput) -> TaskView:
        self.answer = {"status": "accepted", "by": answer.by}
        self.status = "accepted"
        self._record("accepted", by=answer.by)
        return self.snapshot()

    @accept.validator
    def _check_accept(self, answer: AcceptInput) -> None:
        self._still_open()

    @workflow.update(name="reject")
    def reject(self, answer: RejectInput) -> TaskView:
        self.answer = {"status": "rejected", "reason": answer.reason.strip(), "by": answer.by}
        self.status = "rejected"
        self._record("rejected", by=answer.by, reason=answer.reason.strip())
        return self.snapshot()

    @reject.validator
    def _check_reject(self, answer: RejectInput) -> None:
        self._still_open()
        if not answer.reason.strip():
            raise ValueError("a rejection needs a reason; it goes into the lead's story")

    @workflow.update(name="reassign")
    def reassign(self, change: ReassignInput) -> TaskView:
        previous, self.queue = self.queue, change.queue.strip()
        self._record("reassigned", from_queue=previous, queue=self.queue, by=change.by or None)
        self._reroute = True  # the run finds a rep in the new queue
        self._index()
        return self.snapshot()

    @reassign.validator
    def _check_reassign(self, change: ReassignInput) -> None:
        self._still_open()
        queue = change.queue.strip()
        if not queue:
            raise ValueError("a reassignment needs the queue to pass the task to")
        if queue == self.queue:
            raise ValueError(f"task {self._id()} is already in queue {queue}")

    @workflow.query(name="task")
    def snapshot(self) -> TaskView:
        task = self.task
        return TaskView(
            id=self._id(), status=self.status, queue=self.queue,
            lead_workflow_id=task.lead_workflow_id if task else None,
            lead_email=task.lead_email if task else None,
            sla_seconds=task.sla_seconds if task else None, due_at=self.due_at,
            created_at=self.log[0]["at"] if self.log else None,
            reason=task.reason if task else None, policy=task.policy if task else None,
            version=task.version if task else None, answer=self.answer, log=self.log,
            lead_story=task.lead_story if task else {},
            rep=self.rep["rep"] if self.rep else None, rep_name=self.rep["name"] if self.rep else None,
            route=task.route if task else None, waiting=self.waiting,
        )

    def _still_open(self) -> None:
        if self.answer is not None:
            raise ValueError(f"task {self._id()} is already {self.answer['status']}")

    def _record(self, what: str, **details: Any) -> None:
        self.log.append({"at": workflow.now().isoformat(), "what": what,
                         **{k: v for k, v in details.items() if v is not None}})

    def _index(self) -> None:
        if self.task is not None and self.task.index:
            updates: list[SearchAttributeUpdate[Any]] = [search.TASK_QUEUE.value_set(self.queue),
                                                         search.TASK_STATUS.value_set(self.status)]
            if self.due_at and workflow.patched(DUE_INDEXED):
                updates.append(search.TASK_DUE.value_set(datetime.fromisoformat(self.due_at)))
            workflow.upsert_search_attributes(updates)

    def _id(self) -> str:
        return workflow.info().workflow_id

    async def _push(self, kind: str, key: str, idempotency_key: str, body: dict[str, Any]) -> None:
        """Tell the CRM, on the side: the SLA timer runs meanwhile, sales may answer meanwhile."""
        assert self.task is not None
        request = WebhookRequest(key=key, kind=kind, lead=self.task.lead_workflow_id, queue=self.queue,
                                 task=self._id(), idempotency_key=idempotency_key,
                                 body={**body, "task": self._task_view(), "lead": self._lead_view()})
        if not self._real_delivery:  # a run from before: see delivery.legacy
            await delivery.legacy(kind, key, self.task.lead_workflow_id, request)
            return
        push = asyncio.create_task(self._tell_crm(request))
        self._pushing.add(push)
        push.add_done_callback(self._pushing.discard)

    async def _tell_crm(self, request: WebhookRequest) -> None:
        assert self.task is not None
        result = await delivery.post_webhook(request, self.task.delivery_timeout)
        if result.status == "sent":
            self._record("crm_notified", kind=request.kind, queue=request.queue)
        elif result.status == "failed":
            self._record("crm_failed", kind=request.kind, queue=request.queue, detail=result.detail,
                         http_status=result.http_status)
            why = f"the CRM did not take {request.kind} {self._id()}: {result.detail}"
            await self._tell_lead(why)

    def _task_view(self) -> dict[str, Any]:
        task = self.task
        assert task is not None
        return {"id": self._id(), "queue": self.queue, "status": self.status, "reason": task.reason,
                "rep": self.rep, "route": task.route,
                "sla_seconds": task.sla_seconds, "due_at": self.due_at,
                "created_at": self.log[0]["at"] if self.log else None, "policy": task.policy,
                "version": task.version}

    def _lead_view(self) -> dict[str, Any]:
        task = self.task
        assert task is not None
        return {"id": task.lead_workflow_id, "email": task.lead_email, **task.lead_story}
