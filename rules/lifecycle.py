"""The lead lifecycle, written once: what a lead and its hand-off do with a Decision, a timer that
fires and a sales answer. Pure: no I/O, no clock (every function is told the time), no Temporal.

Two drivers run it. LeadWorkflow and HandoffWorkflow (workflows/) drive it in real time, with
Temporal timers, activities and child workflows doing what it asks; rules.simulate drives it in
virtual time for `policy simulate`, `diff`, `suggest`, `explain`, `policy test` and merges. So a
backtest takes the same steps live leads take; where the copies that were here before differed,
they were settled toward what the live workflows did (docs/replay.md names them).

The lead's part of the state is a `Cycle`: LeadWorkflow's carry (workflows.types.LeadCarry) is
one, and so is the simulation's `LeadCycle`. A hand-off's part is a `TaskCycle`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, Field

from rules import manners
from rules.models import Action, Decision, LeadState, Scores, StoryEntry
from rules.policy import Delivery

# An unanswered hand-off breaches its SLA at most this many times (each breach restarts it).
MAX_ESCALATIONS = 3
# A hand-off's SLA and queue when the policy names none.
DEFAULT_SLA = 48 * 3600.0
DEFAULT_QUEUE = "sales"
# How long a lead stays in a final state of its policy before its run ends (LEADFLOW_FINAL_RETENTION).
DEFAULT_RETENTION = 30 * 86400.0
SALES_ANSWERS = ("sales_accept", "sales_reject")
# Events only the lifecycle's own timers make: a history's copies of them are the recorder's
# timers, which a replay schedules itself.
TIMERS = ("check", "sla_breach")
# The actions that go out to the world (an e-mail; the others only in runs from before real delivery).
DELIVERED = ("send", "disqualify", "escalate")


class Cycle(Protocol):
    """The lifecycle's part of a lead: what its next steps depend on."""

    lead: LeadState | None
    scores: Scores
    next_check_at: datetime | None
    final_since: datetime | None  # in a final state since then (None: not in one)
    retention: float | None  # seconds a final state keeps the run (None: for ever)
    open_handoff: str | None
    handoff_seq: int
    rejected: int
    received: list[str]  # content this person received under another address before a merge
    # the times of the lead's marketing e-mails of the last week, gone or held, in order; and
    # the mail held for its slot (rules.manners; both empty under a policy without `delivery:`)
    booked: list[datetime]
    held: list[Held]


@dataclass
class Held:
    """A marketing send waiting for the slot the policy's manners gave it."""

    due: datetime
    action: Action


@dataclass
class LeadCycle:
    """A Cycle of the simulation's own (the workflow's is its carry)."""

    lead: LeadState | None = None
    scores: Scores = field(default_factory=Scores)
    next_check_at: datetime | None = None
    final_since: datetime | None = None
    retention: float | None = DEFAULT_RETENTION
    open_handoff: str | None = None
    handoff_seq: int = 0
    rejected: int = 0
    received: list[str] = field(default_factory=list)
    booked: list[datetime] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)


# -- how a run ends --------------------------------------------------------------------------


class LeadEnding(BaseModel):
    """How one run of a lead ended: the final state it reached, when, and why (the rule and its
    reason), with the end of its story. The workflow's result, kept in the shared database too,
    so the lead's next run (a later event for the same address) knows it, long after Temporal
    has forgotten the closed run."""

    lead_id: str
    run_id: str
    state: str
    since: datetime  # when the lead reached its final state
    ended_at: datetime  # when the run completed (after LEADFLOW_FINAL_RETENTION)
    why: str
    rule: str | None = None
    policy: str = ""
    version: int = 0
    events: int = 0
    story: list[StoryEntry] = Field(default_factory=list)  # the run's last lines
    merged_into: str | None = None  # the lead this one was merged into (state `merged`)


# -- what the lifecycle asks its driver to do -----------------------------------------------------


@dataclass(frozen=True)
class Say:
    """A line for the lead's story, under the event at hand."""

    why: str


@dataclass(frozen=True)
class OpenTask:
    """Open a hand-off task (HandoffWorkflow live; a TaskCycle in a simulation)."""

    task_id: str
    queue: str
    sla_seconds: float
    escalate_to: str | None
    breach_steps: list[str]
    route: str | None
    reason: str | None
    action: Action  # the policy's create_handoff


@dataclass(frozen=True)
class Deliver:
    """Send what the action says (an e-mail)."""

    action: Action


@dataclass(frozen=True)
class Hold(Say):
    """A marketing send the manners moved to a later slot (it waits in `Cycle.held`)."""

    content: str
    until: datetime


@dataclass(frozen=True)
class Skip(Say):
    """A marketing send a cap kept from going out (the policy says `when_capped: skip`)."""

    content: str


Act = Say | OpenTask | Deliver


def scheduled_check(due: datetime) -> dict[str, Any]:
    """The check event a timer asks for. Its time is the due time, not the moment it runs, so
    its id (a hash of the event) and the delivery keys of what it sends are the same when a
    workflow task is evaluated again (replay, a retried task after a worker crash)."""
    return {"type": "check", "at": due.isoformat(), "data": {"reason": "scheduled"}}


def due_check(cycle: Cycle, now: datetime) -> dict[str, Any] | None:
    """The scheduled check due by `now`, if any; the lead waits for it no more."""
    due = cycle.next_check_at
    if due is None or now < due:
        return None
    cycle.next_check_at = None
    return scheduled_check(due)


def ends_at(cycle: Cycle) -> datetime | None:
    """When the lead's run completes: it has stayed in a final state for the retention, and no
    hand-off of it is open (its answer comes back to this run)."""
    if cycle.final_since is None or cycle.retention is None or cycle.open_handoff is not None:
        return None
    return cycle.final_since + timedelta(seconds=cycle.retention)


def apply(cycle: Cycle, decision: Decision, event_type: str, event_data: dict[str, Any], key: str
          ) -> list[Act]:
    """Take an evaluated event's Decision into the lead `key` (the cycle changes in place) and
    say what follows, in order."""
    cycle.lead = decision.lead
    cycle.scores = decision.scores
    if not decision.final:
        cycle.final_since = None
    elif cycle.final_since is None:
        cycle.final_since = decision.at
    if decision.rejected is not None:
        cycle.rejected += 1
        return []
    cycle.next_check_at = decision.next_check_at
    acts: list[Act] = []
    if event_type in SALES_ANSWERS:
        cycle.open_handoff = None
    if event_type == "sla_breach":
        acts.append(Say(breach_line(event_data)))
    for action in decision.actions:
        if action.kind == "create_handoff":
            acts += open_handoff(cycle, action, key)
        elif action.kind == "stop_track" and cycle.held:
            acts += drop_held(cycle, action.track)
        elif action.kind in DELIVERED:
            if action.kind == "send" and action.content in cycle.received:
                acts.append(Say(f"e-mail {action.content} not sent: "
                                "this person received it before the merge"))
                continue
            acts.append(mind(cycle, action, decision.lead, decision.at))
    return acts


def mind(cycle: Cycle, action: Action, lead: LeadState, now: datetime) -> Act:
    """A send as the policy's manners let it go: now, held for a later slot, or skipped."""
    if action.kind != "send" or action.manners is None:
        return Deliver(action)
    rules = action.manners
    tz, source = manners.zone_of(rules, lead.profile)
    cycle.booked[:] = manners.recent(cycle.booked, now)
    slot = manners.place(rules, cycle.booked, tz, now, held=len(cycle.held))
    if slot.at is None:
        why = (f"{len(cycle.held)} e-mails are held already" if len(cycle.held) >= manners.MAX_HELD
               else _caps(rules))
        return Skip(f"e-mail {action.content} skipped: {why}", content=str(action.content))
    cycle.booked.append(slot.at)
    if not slot.moved(now):
        return Deliver(action)
    cycle.held.append(Held(slot.at, action))
    reasons = [r for r, on in (("quiet hours " + str(rules.quiet_hours), slot.quiet),
                               (_caps(rules), slot.capped), ("mail held before it", slot.queued)) if on]
    return Hold(f"e-mail {action.content} held until {manners.local_time(slot.at, tz)} ({source}): "
                + "; ".join(reasons), content=str(action.content), until=slot.at)


def _caps(rules: Delivery) -> str:
    caps = [f"{n} a {what}" for n, what in ((rules.max_per_day, "day"), (rules.max_per_week, "week"))
            if n is not None]
    return "at most " + " and ".join(caps)


def next_release(cycle: Cycle) -> datetime | None:
    """When the first held send is due."""
    return cycle.held[0].due if cycle.held else None


def drop_held(cycle: Cycle, track: str | None) -> list[Act]:
    """A track stopped (the lead moved on, unsubscribed): its held mail is not sent, and gives
    back its slot. (A track that ran out is no stop: its last e-mails still go.)"""
    acts: list[Act] = []
    for held in [h for h in cycle.held if h.action.track is not None and h.action.track == track]:
        cycle.held.remove(held)
        if held.due in cycle.booked:
            cycle.booked.remove(held.due)
        acts.append(Say(f"held e-mail {held.action.content} not sent: track {track} stopped"))
    return acts


def release(cycle: Cycle, now: datetime) -> list[Act]:
    """The held sends due by `now`, in order: each goes out in the slot it was given, unless the
    lead's mail has stopped since (then it is recorded withheld, as the evaluator does)."""
    acts: list[Act] = []
    lead = cycle.lead
    while cycle.held and cycle.held[0].due <= now:
        action = cycle.held.pop(0).action
        if lead is not None and lead.mail_stop is not None:
            acts.append(Deliver(replace(action, withheld=f"the lead {lead.mail_stop}", manners=None)))
        else:
            acts.append(Deliver(action))
    return acts


def open_handoff(cycle: Cycle, action: Action, key: str) -> list[Act]:
    """Open the hand-off a create_handoff asks for; never two at once for one lead."""
    if cycle.open_handoff is not None:
        return [Say(f"hand-off not created: {cycle.open_handoff} is still open")]
    cycle.handoff_seq += 1
    task = OpenTask(
        task_id=f"handoff-{key}-{cycle.handoff_seq}", queue=action.queue or DEFAULT_QUEUE,
        sla_seconds=action.sla_seconds or DEFAULT_SLA, escalate_to=action.escalate_to,
        breach_steps=list(action.breach_steps), route=action.route, reason=action.reason, action=action)
    cycle.open_handoff = task.task_id
    return [task, Say(f"hand-off {task.task_id} opened for queue {task.queue}")]


def breach_line(data: dict[str, Any]) -> str:
    """The lead's story line for a breach of its hand-off's SLA, as the step the policy took."""
    step = data.get("step")
    if step == "reassign":
        if data.get("rep") and data.get("rep") != data.get("from_rep"):
            return f"hand-off SLA breached; passed from {data.get('from_rep')} to {data.get('rep')}"
        return f"hand-off SLA breached; no other rep free, it stays with {data.get('from_rep') or 'nobody'}"
    if step == "none":
        return f"hand-off SLA breached again; still in queue {data.get('queue', '?')}"
    to = f" ({data['rep']})" if data.get("rep") else ""
    return f"hand-off SLA breached; escalated to {data.get('queue', '?')}{to}"


# -- a hand-off --------------------------------------------------------------------------------


@dataclass
class TaskCycle:
    """The lifecycle's part of a hand-off task: its queue, its breaches, when the next is due."""

    task_id: str
    queue: str
    sla_seconds: float
    steps: list[str]  # what each breach does, in order (`reassign`, `escalate:<queue>`)
    due: datetime | None  # the next SLA breach (None: no more)
    breaches: int = 0


def breach_steps(escalate_to: str | None, steps: list[str]) -> list[str]:
    """One step per breach: the policy's, or, for a hand-off that names only an escalation queue,
    escalating there at the first breach (a later breach only records itself)."""
    return list(steps) or ([f"escalate:{escalate_to}"] if escalate_to else [])


def next_breach(now: datetime, sla_seconds: float, breaches: int) -> datetime | None:
    """When the SLA breaches next, `breaches` breaches in."""
    return now + timedelta(seconds=sla_seconds) if breaches < MAX_ESCALATIONS else None


def open_task(task: OpenTask, now: datetime) -> TaskCycle:
    return TaskCycle(task.task_id, task.queue, task.sla_seconds,
                     breach_steps(task.escalate_to, task.breach_steps), next_breach(now, task.sla_seconds, 0))


@dataclass(frozen=True)
class Breach:
    """One SLA breach: its number, the step it took (`none`: past the policy's steps), the queue
    before and after."""

    n: int
    step: str
    from_queue: str
    queue: str

    @property
    def target(self) -> str | None:
        """The queue the step escalates to, if it escalates."""
        return self.step.split(":", 1)[1] if self.step.startswith("escalate:") else None


def breach(task: TaskCycle, now: datetime) -> Breach:
    """The task's SLA breached at `now`: take the policy's next step; the next breach is due one
    SLA later, until MAX_ESCALATIONS. (`reassign` stays in the queue: who holds the task is the
    roster's business, outside the lifecycle.)"""
    task.breaches += 1
    n = task.breaches
    step = task.steps[n - 1] if n <= len(task.steps) else "none"
    from_queue = task.queue
    if step.startswith("escalate:"):
        task.queue = step.split(":", 1)[1]
    task.due = next_breach(now, task.sla_seconds, n)
    return Breach(n, step, from_queue, task.queue)


def breach_event(task_id: str, taken: Breach, now: datetime, rep: str | None = None,
                 from_rep: str | None = None) -> dict[str, Any]:
    """The `sla_breach` event a breach sends the lead."""
    return {"id": f"{task_id}:breach:{taken.n}", "type": "sla_breach", "at": now.isoformat(),
            "data": {"queue": taken.queue, "breach": taken.n, "task": task_id, "step": taken.step,
                     "rep": rep, "from_rep": from_rep}}


def answer_event(task_id: str, status: str, said: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The `sales_accept` / `sales_reject` event a task's answer sends its lead."""
    kind = "sales_accept" if status == "accepted" else "sales_reject"
    return {"id": f"{task_id}:{status}", "type": kind, "at": now.isoformat(),
            "data": {k: v for k, v in said.items() if k in ("reason", "by")} | {"task": task_id}}


__all__ = [
    "DEFAULT_QUEUE", "DEFAULT_RETENTION", "DEFAULT_SLA", "MAX_ESCALATIONS", "SALES_ANSWERS", "TIMERS",
    "Act", "Breach", "Cycle", "Deliver", "Held", "Hold", "LeadCycle", "LeadEnding", "OpenTask", "Say",
    "Skip", "TaskCycle", "answer_event", "apply", "breach", "breach_event", "breach_line", "breach_steps",
    "due_check", "drop_held", "ends_at", "mind", "next_breach", "next_release", "open_handoff", "open_task",
    "release", "scheduled_check",
]
