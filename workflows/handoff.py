"""HandoffWorkflow: a sales task for one sales-ready lead, with the lead's story and an SLA.
Sales accept or reject it (updates, so the caller hears at once whether it counted); a breach
of the SLA escalates to the policy's escalation queue and is recorded. The answer goes back to
the lead as a `sales_accept` / `sales_reject` event. The task and each escalation go to the
CRM's webhook (workflows.delivery); a CRM that refuses one is recorded in the task's log and the
lead's story."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.delivery import WebhookRequest
    from workflows import delivery, search
    from workflows.types import AcceptInput, HandoffInput, ReassignInput, RejectInput

MAX_ESCALATIONS = 3


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

    @workflow.run
    async def run(self, task: HandoffInput) -> dict[str, Any]:
        self.task = task
        self.queue = task.queue
        self._real_delivery = workflow.patched(delivery.REAL_DELIVERY)  # first, see LeadWorkflow.run
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
        kind = "sales_accept" if self.status == "accepted" else "sales_reject"
        await workflow.get_external_workflow_handle(task.lead_workflow_id).signal("event", {
            "id": f"{self._id()}:{self.status}", "type": kind, "at": workflow.now().isoformat(),
            "data": {k: v for k, v in self.answer.items() if k in ("reason", "by")} | {"task": self._id()},
        })
        # a webhook still retrying belongs to this task: it ends when the CRM has answered
        await workflow.wait_condition(lambda: not self._pushing)
        return self.snapshot()

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
        await workflow.get_external_workflow_handle(self.task.lead_workflow_id).signal("event", {
            "id": f"{self._id()}:breach:{n}", "type": "sla_breach", "at": workflow.now().isoformat(),
            "data": {"queue": self.queue, "breach": n, "task": self._id()}})

    @workflow.update(name="accept")
    def accept(self, answer: AcceptInput) -> dict[str, Any]:
        self.answer = {"status": "accepted", "by": answer.by}
        self.status = "accepted"
        self._record("accepted", by=answer.by)
        return self.snapshot()

    @accept.validator
    def _check_accept(self, answer: AcceptInput) -> None:
        self._still_open()

    @workflow.update(name="reject")
    def reject(self, answer: RejectInput) -> dict[str, Any]:
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
    def reassign(self, change: ReassignInput) -> dict[str, Any]:
        previous, self.queue = self.queue, change.queue.strip()
        self._record("reassigned", from_queue=previous, queue=self.queue, by=change.by or None)
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
    def snapshot(self) -> dict[str, Any]:
        task = self.task
        return {
            "id": self._id(), "status": self.status, "queue": self.queue,
            "lead_workflow_id": task.lead_workflow_id if task else None,
            "lead_email": task.lead_email if task else None,
            "sla_seconds": task.sla_seconds if task else None, "due_at": self.due_at,
            "created_at": self.log[0]["at"] if self.log else None,
            "reason": task.reason if task else None, "policy": task.policy if task else None,
            "version": task.version if task else None, "answer": self.answer, "log": self.log,
            "lead_story": task.lead_story if task else {},
        }

    def _still_open(self) -> None:
        if self.answer is not None:
            raise ValueError(f"task {self._id()} is already {self.answer['status']}")

    def _record(self, what: str, **details: Any) -> None:
        self.log.append({"at": workflow.now().isoformat(), "what": what,
                         **{k: v for k, v in details.items() if v is not None}})

    def _index(self) -> None:
        if self.task is not None and self.task.index:
            workflow.upsert_search_attributes([search.TASK_QUEUE.value_set(self.queue),
                                               search.TASK_STATUS.value_set(self.status)])

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
            await workflow.get_external_workflow_handle(self.task.lead_workflow_id).signal(
                "note", {"type": "handoff", "why": why})

    def _task_view(self) -> dict[str, Any]:
        task = self.task
        assert task is not None
        return {"id": self._id(), "queue": self.queue, "status": self.status, "reason": task.reason,
                "sla_seconds": task.sla_seconds, "due_at": self.due_at,
                "created_at": self.log[0]["at"] if self.log else None, "policy": task.policy,
                "version": task.version}

    def _lead_view(self) -> dict[str, Any]:
        task = self.task
        assert task is not None
        return {"id": task.lead_workflow_id, "email": task.lead_email, **task.lead_story}
