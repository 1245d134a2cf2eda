"""Events in, from any door (the HTTP API, the pages, the CLI): checked as the lead would check
them, sent to their lead, and answered event by event."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.policies import PolicyStore
from leadflow.db.database import Database
from leadflow.identity.aliases import Aliases
from leadflow.keys import allowed
from leadflow.ops import metrics
from leadflow.seen import SeenEvents
from leadflow.settings import Settings
from leadflow.temporal import described
from leadflow.tracking.source import domain_of
from leadflow.tracking.stitch import stitch, touches
from rules.identity import lead_key, with_id
from rules.models import Event, LeadRef
from workflows.lead import EVENT_SIGNAL, LeadWorkflow

MAX_BATCH = 1000
# Events only leadflow itself produces: a hand-off's answer and its breaches come from the task
# (HandoffWorkflow), a bounce from the SMTP exchange or a returned report (delivery.inbound, which
# also makes complaints), checks from the lead's own timers. No door takes them from outside: an
# intake key sending `sales_accept` would convert any lead while its real task stayed open.
INTERNAL_EVENTS = frozenset({"check", "sales_accept", "sales_reject", "sla_breach", "email_bounce",
                             "complaint"})
# Events a door takes only from a caller whose role has the permission named.
GUARDED_EVENTS = {"identify": "merge_leads"}
_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,200}$")  # what may go into a visibility query


class IntakeError(ValueError):
    pass


class NoSuchLead(IntakeError):
    pass


class Forbidden(IntakeError):
    """An event the caller may not send (a 403 at the API, `refused` in a batch)."""


@dataclass
class EventResult:
    index: int
    status: Literal["accepted", "duplicate", "refused"]
    lead_id: str | None = None
    event_id: str | None = None
    error: str | None = None
    forbidden: bool = False  # refused for who sent it, not for what it says (a 403 alone)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["forbidden"]
        return out


def check_event(raw: Any) -> dict[str, Any]:
    """The event as JSON, validated here so a caller hears what is wrong before it is sent. An
    event without an id gets one from its content: the same event sent twice is one event."""
    return _checked(raw)[0]


def _checked(raw: Any) -> tuple[dict[str, Any], str]:
    """The event as JSON, and its lead's id."""
    if not isinstance(raw, dict):
        raise IntakeError("bad event: an event is a JSON object")
    try:
        event = Event.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "event"
        message = first["msg"].removeprefix("Value error, ")
        raise IntakeError(f"bad event: {where}: {message}") from None
    if not (event.lead.email or event.lead.external_id):
        raise IntakeError("bad event: lead: needs an email or an external_id")
    if event.type == "identify":
        same_as = _same_as(event)
        if lead_key(same_as) == lead_key(event.lead):
            raise IntakeError("bad event: data.same_as: names the event's own lead")
    return with_id(event).model_dump(mode="json", exclude_none=True), lead_key(event.lead)


def _same_as(event: Event) -> LeadRef:
    """The other id an `identify` event says is the same person."""
    same = event.data.get("same_as")
    if not isinstance(same, dict):
        raise IntakeError("bad event: data.same_as: an identify event names the other id: "
                          '{"email": ...} or {"external_id": ...}')
    try:
        ref = LeadRef.model_validate({k: v for k, v in same.items() if k in ("email", "external_id")})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise IntakeError(f"bad event: data.same_as.{where}: {message}") from None
    if not (ref.email or ref.external_id):
        raise IntakeError("bad event: data.same_as: needs an email or an external_id")
    return ref


def check_door(event: dict[str, Any], role: str | None) -> None:
    """Refuse an event the caller may not produce: leadflow's own events at every door, and an
    `identify` (a merge of two leads) from a role without its permission. `role` None is a door
    that holds Temporal itself (the CLI on the operator's machine): only the internal events are
    refused there."""
    kind = event["type"]
    if kind in INTERNAL_EVENTS:
        raise Forbidden(f"type: {kind!r} is an event only leadflow itself produces (a task's answer, an "
                        "SLA breach, a bounce, a complaint, a check); answer a task through /v1/tasks or "
                        "the CRM's signed routes")
    needs = GUARDED_EVENTS.get(kind)
    if needs is not None and role is not None and not allowed(role, needs):
        raise Forbidden(f"type: the {role} role may not send {kind!r} events (it needs "
                        f"{needs.replace('_', ' ')}: sales, ops or admin)")


def check_type(event: dict[str, Any], store: PolicyStore) -> None:
    """Refuse, before it is sent, an event type that no loaded version of the policy knows: the
    lead would reject it later, where the sender does not see it. With no policy files here,
    the lead alone decides."""
    versions = store.versions()
    if not versions or any(event["type"] in p.event_types for p in versions):
        return
    active = versions[-1]
    raise IntakeError(f"type: unknown event type {event['type']!r}: policy {active.name} "
                      f"v{active.version} knows {', '.join(sorted(active.event_types))}")


def admit(raw: Any, store: PolicyStore, role: str | None = None) -> dict[str, Any]:
    """An event checked as the lead would check it, and as the door checks its sender, ready to
    send."""
    return admit_for(raw, store, role)[0]


def admit_for(raw: Any, store: PolicyStore, role: str | None = None) -> tuple[dict[str, Any], str]:
    """An event checked as the lead would check it and as the door checks its sender (`role`;
    see check_door), and its lead's id."""
    event, key = _checked(raw)
    check_door(event, role)
    check_type(event, store)
    return event, key


def own_domains(settings: Settings) -> frozenset[str]:
    """The customer's own sites: a referrer there is no source."""
    return frozenset(domain_of(site) for site in settings.sites)


def lead_of(event: dict[str, Any]) -> str:
    return lead_key(Event.model_validate(event).lead)


_ALIASES: dict[str, Aliases] = {}
_ALIASES_LOCK = threading.Lock()  # requests open it from worker threads


def aliases_for(settings: Settings) -> Aliases:
    """The shared database's lead aliases (one reader per database for this process)."""
    url = settings.shared_db_url
    with _ALIASES_LOCK:
        if url not in _ALIASES:
            _ALIASES[url] = Aliases(Database.of(settings))
        return _ALIASES[url]


async def _status(client: Client, key: str) -> str | None:
    """running, closed (a run that ended), or None: no such lead."""
    found = await described(client, key)
    if found is None:
        return None
    return "running" if found.status == WorkflowExecutionStatus.RUNNING else "closed"


async def route(client: Client, settings: Settings, event: dict[str, Any], key: str
                ) -> tuple[str, dict[str, Any]]:
    """The lead an event goes to: the one its id names, or the lead that id was merged into. An
    `identify` event goes to the lead that survives the merge it asks for (the event's own lead;
    the other one when only that one is running or exists), saying which lead it takes over."""
    aliases = await asyncio.to_thread(aliases_for, settings)
    target = await asyncio.to_thread(aliases.one, key)
    if event["type"] != "identify":
        return target, event
    same = _same_as(Event.model_validate(event))
    other = await asyncio.to_thread(aliases.one, lead_key(same))
    if other == target:
        return target, event  # one lead already
    mine, theirs = await asyncio.gather(_status(client, target), _status(client, other))
    if mine is None and theirs is None:
        raise NoSuchLead(f"lead: neither {_who(event)} nor {same.email or same.external_id} is a lead: "
                         "send a sign-up first")
    if mine is None or (mine == "closed" and theirs == "running"):
        target, other, theirs = other, target, mine
        who = {k: v for k, v in event["lead"].items() if k in ("email", "external_id")}
    else:
        who = same.model_dump(exclude_none=True)
    merge = {"lead_id": other, "running": theirs == "running", **who}
    return target, {**event, "data": {**event.get("data", {}), "merge": merge}}


def taken(event: dict[str, Any], door: str) -> None:
    metrics.count("leadflow_events", "Events a lead took, by type and the door they came in by",
                  {"type": event["type"], "door": door})


def refused(reason: str) -> None:
    metrics.count("leadflow_events_refused", "Events refused at the door, by reason", {"reason": reason})


def reason_of(err: IntakeError) -> str:
    """A refusal's kind, for a metric label (never the text: it may quote an address)."""
    text = str(err)
    if isinstance(err, NoSuchLead):
        return "no_lead"
    if isinstance(err, Forbidden):
        return "forbidden"
    if text.startswith("type:"):
        return "unknown_type"
    if text.startswith("bad event"):
        return "bad_event"
    return "other"


async def deliver(client: Client, settings: Settings, event: dict[str, Any], key: str | None = None,
                  routed: bool = False, door: str = "api") -> str:
    """Hand one admitted event to its lead: a sign-up starts the lead or joins it
    (signal-with-start), other events are signalled; an event for a lead whose run has ended
    (a final state, kept for LEADFLOW_FINAL_RETENTION) starts its next run. An event for an id
    merged into another lead goes to that lead (`routed`: the caller has looked). Returns the
    lead's id."""
    if not routed or event["type"] == "identify":
        key, event = await route(client, settings, event, key or lead_of(event))
    key = key or lead_of(event)
    if event["type"] != "signup":
        try:
            await client.get_workflow_handle(key).signal(LeadWorkflow.event, event)
            taken(event, door)
            return key
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            if not await ended(client, key):
                raise NoSuchLead(f"lead: no lead {key} for {_who(event)}: send its sign-up first") from None
    # signal-with-start: the SDK takes the signal by name only (EVENT_SIGNAL is LeadWorkflow.event's)
    await client.start_workflow(LeadWorkflow.run, event, id=key, task_queue=settings.task_queue,
                                start_signal=EVENT_SIGNAL, start_signal_args=[event])
    taken(event, door)
    return key


async def ended(client: Client, key: str) -> bool:
    """The lead's workflow exists and its last run has closed (it ended in a final state)."""
    return await _status(client, key) == "closed"


async def decide(client: Client, settings: Settings, event: dict[str, Any], door: str = "api"
                 ) -> dict[str, Any]:
    """Hand one admitted event to its lead and wait for its Decision (the `submit` update; a
    sign-up starts the lead with it when there is none yet)."""
    key, event = await route(client, settings, event, lead_of(event))
    if event["type"] != "signup":
        try:
            decision = await client.get_workflow_handle(key).execute_update(
                LeadWorkflow.submit, event)
            taken(event, door)
            return {"lead_id": key, "decision": decision}
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            if not await ended(client, key):
                raise NoSuchLead(f"lead: no lead {key} for {_who(event)}: send its sign-up first") from None
    start = WithStartWorkflowOperation(
        LeadWorkflow.run, None, id=key, task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
    decision = await client.execute_update_with_start_workflow(LeadWorkflow.submit, event,
                                                                start_workflow_operation=start)
    taken(event, door)
    return {"lead_id": key, "decision": decision}


async def send(client: Client, settings: Settings, raw: Any, wait: bool = False, door: str = "api",
               role: str | None = None) -> dict[str, Any]:
    """One event: sent (`{"lead_id", "sent"}`), or with `wait` its Decision."""
    try:
        event = check_event(raw)
        check_door(event, role)
        if wait:
            return await decide(client, settings, event, door)
        return {"lead_id": await deliver(client, settings, event, door=door), "sent": event["id"]}
    except IntakeError as err:
        refused(reason_of(err))
        raise


async def send_events(client: Client, settings: Settings, store: PolicyStore, seen: SeenEvents,
                      raws: list[Any], parallel: int = MAX_BATCH, door: str = "api", role: str | None = None
                      ) -> list[EventResult]:
    """Many events, each answered: accepted (its lead took it), duplicate (passed on before) or
    refused (why, with the field). A refused event costs only itself. Events of one lead go in
    order, leads side by side. `role` is the sender's (see check_door)."""
    if len(raws) > MAX_BATCH:
        raise IntakeError(f"a batch holds at most {MAX_BATCH} events, this one {len(raws)}")
    results: list[EventResult | None] = [None] * len(raws)
    by_lead: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for i, raw in enumerate(raws):
        try:
            event, key = admit_for(raw, store, role)
        except IntakeError as err:
            results[i] = EventResult(i, "refused", error=str(err), event_id=_id_of(raw),
                                     forbidden=isinstance(err, Forbidden))
            refused(reason_of(err))
            continue
        by_lead.setdefault(key, []).append((i, event))
    # off the loop: with the shared database slow or down, the other requests go on meanwhile
    before = await asyncio.to_thread(
        seen.known, [(key, e["id"]) for key, events in by_lead.items() for _, e in events])
    aliases = await asyncio.to_thread(aliases_for, settings)  # the first opens (and migrates) it
    merged = await asyncio.to_thread(aliases.resolve, by_lead)  # ids merged into another lead
    before = await seen.held(client, before, merged)  # a lead the server does not know took nothing
    taken: list[tuple[str, str]] = []
    gate = asyncio.Semaphore(parallel)

    async def one_lead(key: str, events: list[tuple[int, dict[str, Any]]]) -> None:
        async with gate:
            passed: set[str] = set()
            for i, event in events:
                if (key, event["id"]) in before or event["id"] in passed:
                    results[i] = EventResult(i, "duplicate", key, event["id"])
                    continue
                views: list[dict[str, Any]] = []
                if touches(event):  # a visitor becomes this lead, or a sign-up says where it came from
                    event, views = await asyncio.to_thread(stitch, aliases.ledger, event, key, time.time(),
                                                           own_domains(settings))
                try:
                    reached = await deliver(client, settings, event, merged.get(key, key), routed=True,
                                            door=door)
                    for view in views:  # after the sign-up that starts the lead, at their own times
                        await deliver(client, settings, view, reached, routed=True, door="collect")
                except NoSuchLead as err:
                    results[i] = EventResult(i, "refused", key, event["id"], str(err))
                    refused(reason_of(err))
                    continue
                passed.add(event["id"])
                taken.append((key, event["id"]))
                results[i] = EventResult(i, "accepted", reached, event["id"])

    try:
        await asyncio.gather(*(one_lead(key, events) for key, events in by_lead.items()))
    finally:  # what a lead took is recorded even when another lead's send failed
        await asyncio.to_thread(seen.add, taken)
    return [r for r in results if r is not None]


def _who(event: dict[str, Any]) -> str:
    lead = event.get("lead", {})
    return lead.get("email") or lead.get("external_id") or "?"


def _id_of(raw: Any) -> str | None:
    return raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None


def safe_name(value: str, what: str) -> str:
    """A state, queue or status as it may appear in a visibility query."""
    if not _NAME.match(value):
        raise IntakeError(f"{what}: {value!r} is not a name (letters, digits, - _ . @ +)")
    return value


async def list_workflows(client: Client, query: str, limit: int = 200) -> list[dict[str, Any]]:
    out = []
    async for wf in client.list_workflows(query, limit=limit):
        out.append(_row(wf))
    return out


def _row(wf: Any) -> dict[str, Any]:
    attrs = {pair.key.name: pair.value.isoformat() if isinstance(pair.value, datetime) else pair.value
             for pair in wf.typed_search_attributes}
    return {"id": wf.id, "type": wf.workflow_type, "status": wf.status.name if wf.status else None,
            **{k: attrs.get(k) for k in ("LeadflowState", "LeadflowScore", "LeadflowQueue",
                                          "LeadflowTaskStatus", "LeadflowTaskDue") if k in attrs}}


def leads_query(state: str | None) -> str:
    q = "WorkflowType = 'LeadWorkflow' AND ExecutionStatus = 'Running'"
    return q + (f" AND LeadflowState = '{safe_name(state, 'state')}'" if state else "")


def tasks_query(queue: str | None, all_tasks: bool, status: str | None = None) -> str:
    q = "WorkflowType = 'HandoffWorkflow'"
    if status:
        q += f" AND LeadflowTaskStatus = '{safe_name(status, 'status')}'"
    elif not all_tasks:
        q += " AND LeadflowTaskStatus IN ('open', 'escalated')"
    return q + (f" AND LeadflowQueue = '{safe_name(queue, 'queue')}'" if queue else "")
