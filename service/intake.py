"""Client-side operations: send events, read leads and tasks, answer tasks."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from activities.policies import PolicyStore
from rules.identity import lead_key
from rules.models import Event
from service.settings import Settings


class IntakeError(ValueError):
    pass


def check_event(raw: Any) -> dict[str, Any]:
    """The event as JSON, validated here so a caller hears what is wrong before it is sent."""
    try:
        event = Event.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "event"
        raise IntakeError(f"bad event: {where}: {first['msg']}") from None
    if not (event.lead.email or event.lead.external_id):
        raise IntakeError("bad event: lead needs an email or an external_id")
    data = event.model_dump(mode="json", exclude_none=True)
    data.setdefault("id", f"evt-{uuid.uuid4().hex[:12]}")
    return data


def check_type(event: dict[str, Any], store: PolicyStore) -> None:
    """Refuse, before it is sent, an event type that no loaded version of the policy knows: the
    lead would reject it later, where the sender does not see it. With no policy files here,
    the lead alone decides."""
    versions = store.versions()
    if not versions or any(event["type"] in p.event_types for p in versions):
        return
    active = versions[-1]
    raise IntakeError(f"unknown event type {event['type']!r}: policy {active.name} v{active.version} "
                      f"knows {', '.join(sorted(active.event_types))}")


def admit(raw: Any, store: PolicyStore) -> dict[str, Any]:
    """An event checked as the lead would check it, ready to send."""
    event = check_event(raw)
    check_type(event, store)
    return event


async def send(client: Client, settings: Settings, raw: Any, wait: bool = False) -> dict[str, Any]:
    """A sign-up starts the lead or joins it (signal-with-start); other events are signalled,
    or sent as the `submit` update when the caller wants the Decision back."""
    event = check_event(raw)
    key = lead_key(Event.model_validate(event).lead)
    if event["type"] == "signup":
        handle = await client.start_workflow(
            "LeadWorkflow", args=[event], id=key, task_queue=settings.task_queue,
            start_signal="event", start_signal_args=[event])
        if wait:
            return {"lead_id": key, "state": await wait_for_event(handle, 1)}
        return {"lead_id": key, "sent": event["id"]}
    handle = client.get_workflow_handle(key)
    try:
        if wait:
            return {"lead_id": key, "decision": await handle.execute_update("submit", event)}
        await handle.signal("event", event)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise IntakeError(f"no lead {key} for {event['lead']}: send its sign-up first") from None
        raise
    return {"lead_id": key, "sent": event["id"]}


async def wait_for_event(handle: WorkflowHandle, events: int, tries: int = 100) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for _ in range(tries):
        state = await handle.query("state")
        if state["events"] >= events:
            return state
        await asyncio.sleep(0.1)
    return state


async def list_workflows(client: Client, query: str, limit: int = 200) -> list[dict[str, Any]]:
    out = []
    async for wf in client.list_workflows(query, limit=limit):
        attrs = {pair.key.name: pair.value for pair in wf.typed_search_attributes}
        out.append({"id": wf.id, "type": wf.workflow_type, "status": wf.status.name if wf.status else None,
                    **{k: attrs.get(k) for k in ("LeadflowState", "LeadflowScore", "LeadflowQueue",
                                                  "LeadflowTaskStatus") if k in attrs}})
    return out


def leads_query(state: str | None) -> str:
    q = "WorkflowType = 'LeadWorkflow' AND ExecutionStatus = 'Running'"
    return q + (f" AND LeadflowState = '{state}'" if state else "")


def tasks_query(queue: str | None, all_tasks: bool) -> str:
    q = "WorkflowType = 'HandoffWorkflow'"
    if not all_tasks:
        q += " AND LeadflowTaskStatus IN ('open', 'escalated')"
    return q + (f" AND LeadflowQueue = '{queue}'" if queue else "")
