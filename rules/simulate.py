"""Run a lead through a policy in simulated time, the way the workflow will in real time.

Between events, the `check` events that Decisions asked for (`next_check_at`) are delivered at
their times. Used by `policy test`, `policy explain` and offline backtests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from rules.compile import CompiledPolicy
from rules.durations import parse_duration
from rules.evaluate import evaluate
from rules.models import Decision, Event, LeadRef, LeadState, StoryEntry

DEFAULT_START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
MAX_CHECKS = 10_000


@dataclass
class Trail:
    lead: LeadState | None = None
    decisions: list[Decision] = field(default_factory=list)

    @property
    def story(self) -> list[StoryEntry]:
        return [entry for d in self.decisions for entry in d.story]

    @property
    def states(self) -> list[str]:
        """Every state the lead went through, including those passed within one chain."""
        path: list[str] = [self.decisions[0].state_before] if self.decisions else []
        for d in self.decisions:
            for f in d.fired:
                move = f.effects.get("transition")
                if move:
                    path.append(move.split(" -> ")[1])
        return path


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


def run(policy: CompiledPolicy, events: Iterable[Event], until: datetime | None = None,
        lead: LeadState | None = None) -> Trail:
    trail = Trail(lead)
    next_check: datetime | None = None
    ref: LeadRef | None = None
    checks = 0

    def deliver_checks(before: datetime) -> None:
        nonlocal next_check, checks
        while next_check is not None and next_check <= before and trail.lead is not None:
            checks += 1
            if checks > MAX_CHECKS:
                raise RuntimeError(f"more than {MAX_CHECKS} scheduled checks in one simulation")
            at = next_check
            check = Event(id=f"check@{at.isoformat()}", type="check", at=at, lead=ref,
                          data={"reason": "scheduled"})
            _step(check, at)

    def _step(event: Event, now: datetime) -> None:
        nonlocal next_check
        decision = evaluate(policy, trail.lead, event, now)
        trail.decisions.append(decision)
        trail.lead = decision.lead
        if decision.rejected is None:
            next_check = decision.next_check_at

    for event in events:
        ref = ref or event.lead
        now = event.at or DEFAULT_START
        deliver_checks(now)
        _step(event, now)
    if until is not None:
        deliver_checks(until)
    return trail
