"""A history of many leads through one policy version, in virtual time, the way LeadWorkflow and
HandoffWorkflow would take it: the same evaluator (rules.evaluate), each event at its own time;
between events, the checks a Decision asked for (nurture steps, inactivity) and the SLA deadlines
of open hand-offs fire at their times. Sales answers in the log apply to the hand-off open at
their time, as the inbox would let them (none open: the answer had nothing to answer, and is
skipped); the log's own SLA breaches and checks are the old version's timers and are left out.
A lead that has stayed in a final state of its policy for the retention
(LEADFLOW_FINAL_RETENTION) ends as its run would, and a later event begins its next run.

Pure per lead, so leads run side by side on every core (`simulate_many`)."""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from rules.compile import CompiledPolicy, load_compiled
from rules.evaluate import evaluate
from rules.models import Decision, Event, LeadRef, LeadState

SALES_ANSWERS = ("sales_accept", "sales_reject")
TIMERS = ("check", "sla_breach")  # the log's own: a simulation schedules its own
MAX_ESCALATIONS = 3  # as HandoffWorkflow
DEFAULT_SLA = 48 * 3600.0
MAX_TIMERS = 10_000
DEFAULT_RETENTION = 30 * 86400.0  # as the worker's LEADFLOW_FINAL_RETENTION


@dataclass
class Handoff:
    task: str
    queue: str
    opened_at: str
    sla: float
    escalate_to: str | None
    breaches: int = 0
    due: float | None = None  # unix seconds of the next SLA breach
    answer: str | None = None
    steps: list[str] = field(default_factory=list)  # per breach, as the policy says (HandoffWorkflow)


@dataclass
class LeadResult:
    lead_id: str
    email: str | None
    state: str | None
    path: list[str]
    fired: list[str]
    transitions: list[str] = field(default_factory=list)  # "rule: from -> to", as the lead's story says
    handoffs: list[dict[str, Any]] = field(default_factory=list)
    signup_at: str | None = None
    sales_ready_at: str | None = None
    events: int = 0
    ended: int = 0  # runs that ended (a final state, kept for the retention); a later event began the next
    skipped: int = 0  # sales answers with no hand-off open
    rejected: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)  # with trace: each evaluation

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.steps:
            del out["steps"]
        return out


def simulate_lead(policy: CompiledPolicy, lead_id: str, raws: list[dict[str, Any]],
                  until: datetime | None = None, trace: bool = False,
                  retention: float | None = DEFAULT_RETENTION, keep: dict[str, Any] | None = None
                  ) -> LeadResult:
    """One lead's events (as the archive exports them), in their order; with `trace`, each
    evaluation's event, resulting state and fired rules in `steps`. `retention`: how long a lead
    in a final state keeps its run (None: for ever). `keep`, when given, receives the lead as the
    last evaluation left it (`lead`, `scores`) and, while a hand-off it opened is unanswered, the
    action and Decision that opened it (`handoff`, `handoff_decision`): a merge takes them."""
    events = [Event.model_validate({k: v for k, v in raw.items() if k != "lead_id"})
              for raw in raws if raw.get("type") not in TIMERS]
    lead: LeadState | None = None
    result = LeadResult(lead_id, None, None, [], [])
    next_check: datetime | None = None
    open_task: Handoff | None = None
    final_since: float | None = None
    ended: list[str] = []  # the final state of each run that ended
    timers = 0

    def step(event: Event, now: datetime) -> Decision:
        nonlocal lead, next_check, open_task, final_since
        decision = evaluate(policy, lead, event, now)
        if lead is None and ended:  # the lead's next run begins
            result.path.append(decision.state_before)
        lead = decision.lead
        if not decision.final:
            final_since = None
        elif final_since is None:
            final_since = now.timestamp()
        result.events += 1
        if trace:
            result.steps.append({"event_id": event.id, "event_type": event.type, "at": _iso(now),
                                 "state": decision.state, "fired": [f.rule for f in decision.fired]})
        if not result.path:
            result.path.append(decision.state_before)
            result.signup_at = _iso(now)
        if decision.rejected is not None:
            result.rejected += 1
            return decision
        next_check = decision.next_check_at
        result.transitions.extend(f"{e.rule}: {e.from_state} -> {e.to_state}"
                                  for e in decision.story if e.rule)
        for fired in decision.fired:
            result.fired.append(fired.rule)
            move = fired.effects.get("transition")
            if move:
                to = move.split(" -> ")[1]
                result.path.append(to)
                if to == "sales-ready" and result.sales_ready_at is None:
                    result.sales_ready_at = _iso(now)
        if event.type in SALES_ANSWERS:
            open_task = None
        if keep is not None:
            keep["lead"], keep["scores"] = decision.lead, decision.scores
        for action in decision.actions:
            if action.kind == "create_handoff" and open_task is None:
                if keep is not None:
                    keep["handoff"], keep["handoff_decision"] = action, decision
                n = len(result.handoffs) + 1
                sla = action.sla_seconds or DEFAULT_SLA
                open_task = Handoff(f"handoff-{lead_id}-{n}", action.queue or "sales", _iso(now), sla,
                                    action.escalate_to, due=now.timestamp() + sla,
                                    steps=list(action.breach_steps))
                result.handoffs.append({"task": open_task.task, "queue": open_task.queue,
                                        "at": open_task.opened_at, "fit": decision.scores.fit,
                                        "intent": decision.scores.intent})
        return decision

    def due_before(moment: float) -> None:
        """Fire the checks and SLA breaches due no later than `moment`, in time order."""
        nonlocal next_check, timers, lead, final_since
        while lead is not None:
            check_at = next_check.timestamp() if next_check is not None else None
            breach_at = open_task.due if open_task is not None else None
            ends_at = (final_since + retention if final_since is not None and retention is not None
                       and open_task is None else None)
            first = min((t for t in (check_at, breach_at, ends_at) if t is not None), default=None)
            if first is None or first > moment:
                return
            if first not in (check_at, breach_at):  # the run completes; a later event begins the next
                ended.append(lead.state)
                lead, next_check, final_since = None, None, None
                return
            timers += 1
            if timers > MAX_TIMERS:
                raise RuntimeError(f"{lead_id}: more than {MAX_TIMERS} timers in one simulation")
            if check_at == first:
                at = next_check
                assert at is not None
                next_check = None
                # made here, so valid: built without pydantic's validation (a third of the
                # evaluations are checks)
                assert ref is not None  # a lead exists: some event made it
                step(Event.model_construct(id=f"check@{at.isoformat()}", type="check", at=at, lead=ref,
                                           data={"reason": "scheduled"}), at)
            else:
                assert open_task is not None
                at = datetime.fromtimestamp(first, timezone.utc)
                open_task.breaches += 1
                steps = open_task.steps or ([f"escalate:{open_task.escalate_to}"] * MAX_ESCALATIONS
                                            if open_task.escalate_to else [])
                taken = steps[open_task.breaches - 1] if open_task.breaches <= len(steps) else ""
                target = taken.split(":", 1)[1] if taken.startswith("escalate:") else None
                if target and open_task.queue != target:  # `reassign` stays in the queue
                    open_task.queue = target
                    result.handoffs[-1]["escalated_to"] = open_task.queue
                    result.handoffs[-1]["escalated_at"] = _iso(at)  # its rep's place frees (routing_load)
                n = open_task.breaches
                open_task.due = first + open_task.sla if n < MAX_ESCALATIONS else None
                result.handoffs[-1]["breaches"] = n
                step(Event(id=f"{open_task.task}:breach:{n}", type="sla_breach", at=at, lead=ref,
                           data={"queue": open_task.queue, "breach": n, "task": open_task.task,
                                 "step": taken or "none"}), at)

    # the lead's identity, without the profile the first event brought: a check or an SLA breach
    # carries none (it would bring the sign-up's profile back to a lead whose next run began)
    ref = LeadRef(email=events[0].lead.email, external_id=events[0].lead.external_id) if events else None
    result.email = ref.email if ref else None
    for event in events:
        now = event.at
        assert now is not None, "an exported event always has its time"
        due_before(now.timestamp())
        if event.type in SALES_ANSWERS:
            if open_task is None:
                result.skipped += 1
                continue
            open_task.answer = "accepted" if event.type == "sales_accept" else "rejected"
            result.handoffs[-1]["answer"] = open_task.answer
            result.handoffs[-1]["answered_at"] = _iso(now)  # frees the rep's place (routing_load)
            event = event.model_copy(update={"data": {**event.data, "task": open_task.task}})
        step(event, now)
    if until is not None:
        due_before(until.timestamp())
    if keep is not None and (open_task is None or open_task.answer is not None):
        keep.pop("handoff", None)
        keep.pop("handoff_decision", None)
    result.state = lead.state if lead is not None else (ended[-1] if ended else None)
    result.ended = len(ended)
    return result


def group(lines: Iterable[str], source: str = "log") -> tuple[dict[str, list[dict[str, Any]]],
                                                             datetime | None]:
    """The log's events by lead (first appearance first), and its last event's time."""
    leads: dict[str, list[dict[str, Any]]] = {}
    last: datetime | None = None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}:{n}: not JSON: {err.msg}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("lead_id"), str) or not raw.get("at"):
            raise ValueError(f"{source}:{n}: an event with `lead_id` and `at` (what `leadflow events "
                             "export` and `leadflow generate` write)")
        try:
            at = datetime.fromisoformat(str(raw["at"]).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{source}:{n}: at: {raw['at']!r} is not an ISO time") from None
        last = at if last is None or at > last else last
        leads.setdefault(raw["lead_id"], []).append(raw)
    return leads, last


_POLICY: CompiledPolicy | None = None


def _load(path: str) -> None:
    global _POLICY
    _POLICY = load_compiled(path)


def _run_one(job: tuple[str, list[dict[str, Any]], datetime | None, float | None]) -> dict[str, Any]:
    assert _POLICY is not None
    lead_id, raws, until, retention = job
    return simulate_lead(_POLICY, lead_id, raws, until, retention=retention).as_dict()


def simulate_many(policy_file: str, leads: dict[str, list[dict[str, Any]]], until: datetime | None,
                  processes: int | None = None, progress: Callable[[int], None] | None = None,
                  retention: float | None = DEFAULT_RETENTION) -> list[dict[str, Any]]:
    """Every lead's result, in the log's lead order; leads spread over `processes` (default: every
    core; 1: in this process). `progress` hears how many events each finished lead had."""
    jobs = [(lead_id, raws, until, retention) for lead_id, raws in leads.items()]
    processes = processes or os.cpu_count() or 1
    if processes <= 1 or len(jobs) < 2:
        _load(policy_file)
        out = []
        for job in jobs:
            out.append(_run_one(job))
            if progress:
                progress(len(job[1]))
        return out
    results: dict[str, dict[str, Any]] = {}
    context = multiprocessing.get_context("spawn")  # the engine's state is per process: no fork
    with context.Pool(processes, initializer=_load, initargs=(policy_file,)) as pool:
        size = max(1, min(200, len(jobs) // (processes * 8)))
        for job, result in zip(jobs, pool.imap(_run_one, jobs, chunksize=size), strict=True):
            results[job[0]] = result
            if progress:
                progress(len(job[1]))
    return [results[lead_id] for lead_id in leads]


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Leads per final state, hand-offs per queue per ISO week, and time to sales-ready."""
    states = Counter(r["state"] for r in results)
    weekly: Counter[tuple[str, str]] = Counter()
    for r in results:
        for h in r["handoffs"]:
            year, week, _ = datetime.fromisoformat(h["at"].replace("Z", "+00:00")).isocalendar()
            weekly[(h["queue"], f"{year}-W{week:02d}")] += 1
    days = [(_at(r["sales_ready_at"]) - _at(r["signup_at"])).total_seconds() / 86400
            for r in results if r["sales_ready_at"] and r["signup_at"]]
    return {"leads": len(results), "states": dict(sorted(states.items(), key=lambda kv: str(kv[0]))),
            "handoffs_per_week": {f"{q} {w}": n for (q, w), n in sorted(weekly.items())},
            "handoffs": sum(len(r["handoffs"]) for r in results),
            "sales_ready": len(days),
            "median_days_to_sales_ready": round(statistics.median(days), 2) if days else None}


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Progress:
    """Events done, on stderr: a bar when it is a terminal, a line now and then when it is not."""

    def __init__(self, total: int, stream: Any = None) -> None:
        stream = stream if stream is not None else sys.stderr  # the one in force now, not at import
        self.total, self.done, self.stream = max(total, 1), 0, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._shown = -1

    def __call__(self, events: int) -> None:
        self.done += events
        share = self.done / self.total
        step = int(share * (50 if self.tty else 10))
        if step == self._shown:
            return
        self._shown = step
        if self.tty:
            bar = "#" * int(share * 40)
            self.stream.write(f"\r[{bar:<40}] {self.done:,}/{self.total:,} events")
            if self.done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"{self.done:,}/{self.total:,} events\n")
        self.stream.flush()


__all__ = ["LeadResult", "Progress", "group", "simulate_lead", "simulate_many", "summary"]
