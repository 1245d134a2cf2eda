"""A lead in virtual time: rules.lifecycle driven by the clock of its own events, the way
LeadWorkflow and HandoffWorkflow drive it in real time, with the same evaluator (rules.evaluate).

Between events, what the lifecycle's timers ask for fires at its time: the checks a Decision
asked for (nurture steps, inactivity), the SLA breaches of an open hand-off, and the end of a run
that stayed in a final state for the retention (a later event begins the lead's next run). A
history's own checks and breaches were its recorder's timers and are left out; a sales answer
applies to the hand-off open at its time, as the inbox would let it (none open: it is skipped).

Used by `policy test` and `explain` (one lead from a policy's examples), by `policy simulate`,
`diff` and `suggest` (leadflow.replay, many leads side by side) and by merges
(leadflow.identity.merge). Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from typing import Any

from rules import lifecycle
from rules.compile import CompiledPolicy
from rules.durations import parse_duration
from rules.evaluate import evaluate
from rules.identity import identity_of, merged_log, readdress
from rules.lifecycle import DEFAULT_RETENTION, LeadCycle, OpenTask, TaskCycle
from rules.models import OUTCOME, Action, Decision, Event, LeadRef, LeadState

DEFAULT_START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
MAX_TIMERS = 10_000


@dataclass
class LeadResult:
    """What a lead's history came to. `decisions` (with `record`), `lead` and `lines`
    stay out of the JSON."""

    lead_id: str
    email: str | None
    state: str | None
    path: list[str]  # every state the lead went through, including those passed within one chain
    fired: list[str]
    transitions: list[str] = field(default_factory=list)  # "rule: from -> to", as the lead's story says
    handoffs: list[dict[str, Any]] = field(default_factory=list)
    signup_at: str | None = None
    sales_ready_at: str | None = None
    events: int = 0
    ended: int = 0  # runs that ended (a final state, kept for the retention); a later event began the next
    endings: list[str] = field(default_factory=list)  # the final state of each run that ended
    skipped: int = 0  # sales answers with no hand-off open
    # marketing e-mails the policy's delivery manners held for a later slot, and kept from going
    # out (a cap with `when_capped: skip`); `sent` counts the e-mails that went out
    sends_moved: int = 0
    sends_skipped: int = 0
    sent: list[str] = field(default_factory=list)
    # the e-mails of A/B tests that went out: (test, the variant this lead got), in order
    ab_sends: list[tuple[str, str]] = field(default_factory=list)
    # the policy's parts that acted with no rule firing, as rules.words names them: a nurture
    # track's step that sent (`nurture.<track>`), the routing rule that chose a hand-off's queue
    acted: list[str] = field(default_factory=list)
    rejected: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)  # with trace: each evaluation
    # with trace: the lifecycle's steps as the lead's story tells them, each with its time, in the
    # story's order: each transition ("rule: from -> to"), each line the lifecycle says (a hand-off
    # opened, a breach, a merge), "run ended", "run began"
    lines: list[tuple[str, str]] = field(default_factory=list)
    merged_into: str | None = None  # the lead this one was merged into (its state then stays)
    outcome: str | None = None  # what the history's CRM said became of the lead (won, lost), if it did
    # the highest fit + intent its evaluations reached: how near the policy brought the lead to
    # sales, to rank leads by (policy suggest's hold-out AUC); interest never hands a lead over
    peak_score: float = 0.0
    decisions: list[Decision] = field(default_factory=list)
    lead: LeadState | None = None

    def as_dict(self) -> dict[str, Any]:
        # by hand, not asdict: that deep-copies the lead and every Decision
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("decisions", "lead", "lines", "sent")}
        if not self.steps:
            del out["steps"]
        if not self.ab_sends:  # the results of a policy without A/B tests read as they did
            del out["ab_sends"]
        if not self.acted:
            del out["acted"]
        return out


class Simulation:
    """One lead's lifecycle in virtual time. Feed it events in time order (`take`), then
    `advance` to the end of the history; `result` says what happened. `retention`: how long a
    final state keeps the run (None: for ever). `trace`: each evaluation in `result.steps` and the
    lifecycle's steps in `result.lines`;
    `record`: each Decision in `result.decisions`."""

    def __init__(self, policy: CompiledPolicy, lead_id: str, retention: float | None = DEFAULT_RETENTION,
                 trace: bool = False, record: bool = False, lead: LeadState | None = None) -> None:
        self.policy, self.lead_id, self.retention = policy, lead_id, retention
        self.trace, self.record = trace, record
        self.cycle = LeadCycle(lead=lead, retention=retention)
        self.task: TaskCycle | None = None
        # the policy's create_handoff and the Decision that opened the task, while it is open
        self.opened_by: tuple[Action, Decision] | None = None
        self.result = LeadResult(lead_id, None, None, [], [], lead=lead)
        # the lead's identity, without the profile its first event brought: a check or a breach
        # carries none (it would bring the sign-up's profile back to a lead whose next run began)
        self.ref: LeadRef | None = None
        self._timers = 0
        # the events this lead took from outside, in every run: what a merge replays (the archive's)
        self.taken: list[Event] = []

    def take(self, event: Event) -> None:
        """An event from outside at its time (the timers due before it fire first)."""
        if self.result.merged_into is not None:
            raise ValueError(f"{self.lead_id} was merged into {self.result.merged_into}")
        now = event.at or DEFAULT_START
        if self.ref is None:
            self.ref = LeadRef(email=event.lead.email, external_id=event.lead.external_id)
            self.result.email = self.ref.email
        if event.type in lifecycle.TIMERS:
            return
        if event.type == OUTCOME:  # a label on the history, not something the lead did
            self.result.outcome = str(event.data.get("outcome") or "") or None
            return
        self.advance(now)
        if event.type in lifecycle.SALES_ANSWERS:
            if self.task is None:
                self.result.skipped += 1
                return
            answer = "accepted" if event.type == "sales_accept" else "rejected"
            self.result.handoffs[-1]["answer"] = answer
            self.result.handoffs[-1]["answered_at"] = _iso(now)  # frees the rep's place (routing_load)
            event = event.model_copy(update={"data": {**event.data, "task": self.task.task_id}})
        self.taken.append(event)
        self._step(event, now)

    def advance(self, moment: datetime) -> None:
        """Fire the checks, SLA breaches and the run's end due no later than `moment`, in time order."""
        while self.cycle.lead is not None and self.result.merged_into is None:
            check_at = self.cycle.next_check_at
            breach_at = self.task.due if self.task is not None else None
            end_at = lifecycle.ends_at(self.cycle)
            release_at = lifecycle.next_release(self.cycle)
            first = min((t for t in (check_at, breach_at, end_at, release_at) if t is not None), default=None)
            if first is None or first > moment:
                return
            if first == release_at:  # before a check due with it, as the workflow wakes to both
                self._acts(lifecycle.release(self.cycle, first), first)
                continue
            if first not in (check_at, breach_at):  # the run completes; a later event begins the next
                assert self.cycle.lead is not None
                self.result.endings.append(self.cycle.lead.state)
                if self.trace:
                    self.result.lines.append((_iso(first), "run ended"))
                self.cycle = LeadCycle(retention=self.retention)
                return
            self._timers += 1
            if self._timers > MAX_TIMERS:
                raise RuntimeError(f"{self.lead_id}: more than {MAX_TIMERS} timers in one simulation")
            assert self.ref is not None  # a lead exists: some event made it
            if first == check_at:
                check = lifecycle.due_check(self.cycle, first)
                assert check is not None
                # made here, so valid: built without pydantic's validation (a third of the
                # evaluations are checks)
                self._step(Event.model_construct(id=f"check@{first.isoformat()}", type="check", at=first,
                                                 lead=self.ref, data=check["data"]), first)
            else:
                assert self.task is not None
                taken = lifecycle.breach(self.task, first)
                handoff = self.result.handoffs[-1]
                if taken.queue != taken.from_queue:
                    handoff["escalated_to"] = taken.queue
                    handoff["escalated_at"] = _iso(first)  # its rep's place frees (routing_load)
                handoff["breaches"] = taken.n
                handoff.setdefault("steps", []).append(taken.step)
                raw = lifecycle.breach_event(self.task.task_id, taken, first)
                self._step(Event.model_construct(id=raw["id"], type="sla_breach", at=first, lead=self.ref,
                                                 data=raw["data"]), first)

    def _step(self, event: Event, now: datetime) -> None:
        result = self.result
        decision = evaluate(self.policy, self.cycle.lead, event, now)
        if self.cycle.lead is None and result.endings:  # the lead's next run begins
            result.path.append(decision.state_before)
            if self.trace:
                result.lines.append((_iso(now), "run began"))
        result.events += 1
        if self.trace:
            result.steps.append({"event_id": event.id, "event_type": event.type, "at": _iso(now),
                                 "state": decision.state, "fired": [f.rule for f in decision.fired]})
        if self.record:
            result.decisions.append(decision)
        if not result.path:
            result.path.append(decision.state_before)
            result.signup_at = _iso(now)
        acts = lifecycle.apply(self.cycle, decision, event.type, event.data, self.lead_id)
        result.lead = decision.lead
        if decision.rejected is not None:
            result.rejected += 1
            return
        result.peak_score = max(result.peak_score, decision.scores.fit + decision.scores.intent)
        moves = [f"{e.rule}: {e.from_state} -> {e.to_state}" for e in decision.story if e.rule]
        result.transitions.extend(moves)
        if self.trace:  # with the lines no rule made (which variant of an A/B test the lead got)
            result.lines.extend((_iso(now), f"{e.rule}: {e.from_state} -> {e.to_state}" if e.rule else e.why)
                                for e in decision.story)
        self._acts(acts, now)
        for fired in decision.fired:
            result.fired.append(fired.rule)
            move = fired.effects.get("transition")
            if move:
                to = move.split(" -> ")[1]
                result.path.append(to)
                if to == "sales-ready" and result.sales_ready_at is None:
                    result.sales_ready_at = _iso(now)
        if self.cycle.open_handoff is None:
            self.task, self.opened_by = None, None
        self._opened(acts, decision, now)

    def _acts(self, acts: list[lifecycle.Act], now: datetime) -> None:
        """Count and tell what the lifecycle asked for: the e-mails it sent, held and skipped."""
        result = self.result
        for act in acts:
            if isinstance(act, lifecycle.Hold):
                result.sends_moved += 1
            elif isinstance(act, lifecycle.Skip):
                result.sends_skipped += 1
            elif isinstance(act, lifecycle.Deliver) and act.action.kind == "send" and not act.action.withheld:
                result.sent.append(str(act.action.content))
                if act.action.ab_test is not None:
                    result.ab_sends.append((act.action.ab_test, str(act.action.content)))
                if act.action.track is not None:
                    result.acted.append(f"nurture.{act.action.track}")
            if self.trace and isinstance(act, lifecycle.Say):
                result.lines.append((_iso(now), act.why))

    def _opened(self, acts: list[lifecycle.Act], decision: Decision, now: datetime) -> None:
        for act in acts:
            if isinstance(act, OpenTask):
                self.task = lifecycle.open_task(act, now)
                self.opened_by = (act.action, decision)
                if act.route is not None:
                    self.result.acted.append(act.route)
                self.result.handoffs.append({"task": act.task_id, "queue": act.queue, "at": _iso(now),
                                             "fit": decision.scores.fit, "intent": decision.scores.intent})

    def merge(self, other: Simulation, event: Event) -> None:
        """`other` is this person too (an `identify` event, `event`): as LeadWorkflow merges, both
        leads' events so far, addressed to this one, are replayed in time order and make this
        lead; the other's open hand-off becomes this lead's (or is withdrawn when this lead has
        its own); both stories are one; the other lead ends. Then `event` is taken as any other."""
        now = event.at or DEFAULT_START
        self.advance(now)
        other.advance(now)
        at = _iso(now)
        who = str(other.ref.email or other.ref.external_id) if other.ref else other.lead_id
        lead = self.cycle.lead
        identity = identity_of(lead.profile) if lead is not None else {}
        replay = Simulation(self.policy, self.lead_id, retention=None)
        for raw in merged_log([e.model_dump(mode="json", exclude_none=True) for e in self.taken],
                              [e.model_dump(mode="json", exclude_none=True) for e in other.taken], identity):
            replay.take(Event.model_validate(raw))
        replay.finish(now)
        if replay.cycle.lead is not None:
            self.cycle.lead, self.cycle.scores = replay.cycle.lead, replay.cycle.scores
        self.result.peak_score = max(self.result.peak_score, replay.result.peak_score)
        says: list[str] = []
        theirs = other.task
        if theirs is not None and self.task is not None:
            says.append(f"hand-off {theirs.task_id} of {who} withdrawn: "
                        f"{self.task.task_id} is this person's task")
        elif theirs is not None:
            self.task, self.cycle.open_handoff = theirs, theirs.task_id
            self.result.handoffs.append(other.result.handoffs[-1])
            says.append(f"hand-off {theirs.task_id} of {who} is this lead's now")
        # one story, in time order (this lead's lines first where two coincide), as the workflow's
        self.result.lines = sorted([*self.result.lines, *((at, why) for why in says), *other.result.lines],
                                   key=lambda line: line[0])
        self.result.lines.append((at, f"merged with {who}"))
        self.taken.extend(readdress_event(e, identity) for e in other.taken)
        if self.cycle.open_handoff is None and replay.opened_by is not None:
            action, decision = replay.opened_by
            acts = lifecycle.open_handoff(self.cycle, action, self.lead_id)
            self.result.lines.extend((at, act.why) for act in acts if isinstance(act, lifecycle.Say))
            self._opened(acts, decision, now)
        if self.cycle.lead is not None:
            self.cycle.lead = self.cycle.lead.model_copy(
                update={"handoff_open": self.cycle.open_handoff is not None})
        other.result.merged_into = self.lead_id
        other.task = None
        self.take(event)

    def finish(self, until: datetime | None) -> LeadResult:
        """The result once the timers due by `until` (None: none more) have fired."""
        if until is not None:
            self.advance(until)
        result = self.result
        lead = self.cycle.lead
        result.state = lead.state if lead is not None else (result.endings[-1] if result.endings else None)
        if result.merged_into is not None:
            result.state = "merged"
        result.ended = len(result.endings)
        return result


def simulate_lead(policy: CompiledPolicy, lead_id: str, raws: list[dict[str, Any]],
                  until: datetime | None = None, trace: bool = False,
                  retention: float | None = DEFAULT_RETENTION) -> LeadResult:
    """One lead's events (as the archive exports them: JSON objects with `at`), in their order."""
    return run_events(policy, lead_id, (Event.model_validate({k: v for k, v in raw.items() if k != "lead_id"})
                                        for raw in raws), until, trace=trace, retention=retention)


def run_events(policy: CompiledPolicy, lead_id: str, events: Iterable[Event], until: datetime | None = None,
               trace: bool = False, record: bool = False, retention: float | None = DEFAULT_RETENTION,
               lead: LeadState | None = None) -> LeadResult:
    sim = Simulation(policy, lead_id, retention, trace=trace, record=record, lead=lead)
    for event in events:
        sim.take(event)
    return sim.finish(until)


def readdress_event(event: Event, identity: dict[str, Any]) -> Event:
    """An event of a merged lead as the survivor's (rules.identity.readdress)."""
    if not identity:
        return event
    return Event.model_validate(readdress(event.model_dump(mode="json", exclude_none=True), identity))


def simulate_people(policy: CompiledPolicy, leads: dict[str, list[dict[str, Any]]],
                    until: datetime | None = None, retention: float | None = DEFAULT_RETENTION,
                    trace: bool = False) -> dict[str, LeadResult]:
    """Leads whose histories meet: an `identify` event that merged one into another (its
    `data.merge.lead_id`, as the intake wrote it) merges them here as it did live, and the merged
    lead's later events go to the survivor. Every lead's events in one time order."""
    sims = {lead_id: Simulation(policy, lead_id, retention, trace=trace) for lead_id in leads}
    into: dict[str, str] = {}  # a merged lead: the lead that took it over
    events = [(Event.model_validate({k: v for k, v in raw.items() if k != "lead_id"}), lead_id)
              for lead_id, raws in leads.items() for raw in raws]
    # in time order; a lead's own events in their order (the sort is stable)
    for event, lead_id in sorted(events, key=lambda item: item[0].at or DEFAULT_START):
        target = lead_id
        while target in into:
            target = into[target]
        sim = sims[target]
        if target != lead_id:
            lead = sim.cycle.lead
            event = readdress_event(event, identity_of(lead.profile) if lead is not None else {})
        merge = event.data.get("merge") if event.type == "identify" else None
        other = merge.get("lead_id") if isinstance(merge, dict) else None
        while isinstance(other, str) and other in into:
            other = into[other]
        if isinstance(other, str) and other != target and other in sims:
            into[other] = target
            sim.merge(sims[other], event)
        else:
            sim.take(event)
    return {lead_id: sim.finish(until) for lead_id, sim in sims.items()}


def offset(text: str) -> timedelta:
    return timedelta(seconds=parse_duration(text.lstrip("+").strip()))


def test_events(spec_events: Iterable[dict[str, Any]], profile: dict[str, Any],
                start: datetime = DEFAULT_START) -> list[Event]:
    """Events of a policy test: `{type, at: +3d, ...data}`; the profile rides on the first."""
    events: list[Event] = []
    ref = {"email": "test@example.com", **profile}
    for i, raw in enumerate(spec_events):
        data = {k: v for k, v in raw.items() if k not in ("type", "at", "id", "lead")}
        lead = ref if i == 0 else {"email": ref["email"], **raw.get("lead", {})}
        at = start + offset(raw["at"]) if raw.get("at") else start
        events.append(Event(id=raw.get("id", f"e{i}"), type=raw["type"], at=at,
                            lead=LeadRef(**lead), data=data))
    return events


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


__all__ = ["DEFAULT_START", "LeadResult", "Simulation", "offset", "readdress_event", "run_events",
           "simulate_lead", "simulate_people", "test_events"]
