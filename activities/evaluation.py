"""Evaluating a lead's queued events: which policy version each one meets, its Decision, or why
the policy could not decide. The same code runs in the evaluator processes and, with
`LEADFLOW_EVAL_PROCESSES=0`, in the worker itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from rules.compile import CompiledPolicy
from rules.engine import EngineError
from rules.evaluate import ChainLimitError, evaluate, iso
from rules.lead_delta import lead_changes, with_changes
from rules.lifecycle import LeadEnding
from rules.models import Decided, Decision, Event, LeadState, StoryEntry, built


class EvaluateBatch(BaseModel):
    lead: LeadState | None
    events: list[Event]
    now: datetime
    version: int | None = None  # the version the lead is pinned to; None at capture


class DecisionDelta(Decided):
    """A Decision as it crosses to the lead workflow: the lead as what changed of it."""

    final: bool = False
    lead_changes: dict[str, Any] = Field(default_factory=dict)


class BatchResult(BaseModel):
    """One entry per event: its Decision, or (None and) why the policy could not decide.

    What the lead workflow receives (and its history keeps) is `slim`: per event the Decision
    without its lead, with the fields of the lead it changed (`deltas`, rules.lead_delta),
    `decisions` left empty; `full` makes the Decisions again. Runs from before received whole
    Decisions, and replay still reads them."""

    decisions: list[Decision | None]
    errors: list[str | None]
    # the worker's LEADFLOW_FINAL_RETENTION: how long a lead in a final state keeps its run
    retention: float | None = None
    earlier: list[LeadEnding] = Field(default_factory=list)  # at a run's first event: how earlier runs ended
    deltas: list[DecisionDelta | None] = Field(default_factory=list)

    def slim(self, lead: LeadState | None) -> BatchResult:
        """This result as it crosses to the workflow, which holds `lead` (the batch's own)."""
        deltas: list[DecisionDelta | None] = []
        for decision in self.decisions:
            if decision is None:
                deltas.append(None)
                continue
            deltas.append(built(DecisionDelta, {**_said(decision), "final": decision.final,
                                                "lead_changes": lead_changes(lead, decision.lead)}))
            lead = decision.lead
        return self.model_copy(update={"decisions": [], "deltas": deltas})

    def full(self, lead: LeadState | None) -> list[Decision | None]:
        """The Decisions, from a result `slim` made for a workflow holding `lead`; a result from
        before slim results existed has them already."""
        if not self.deltas:
            return self.decisions
        out: list[Decision | None] = []
        for delta in self.deltas:
            if delta is None:
                out.append(None)
                continue
            lead = with_changes(lead, delta.lead_changes)
            out.append(built(Decision, {**_said(delta), "lead": lead, "final": delta.final}))
        return out


DECIDED = tuple(Decided.model_fields)


def _said(decided: Decided) -> dict[str, Any]:
    """What a Decision (or its delta) says of its event, field by field, in their order."""
    return {name: decided.__dict__[name] for name in DECIDED}


class PolicyError(Exception):
    """The policy cannot decide this event (a chain too long, a version the evaluator refuses,
    the engine stopped or ran out of time on this event): the event is rejected into the lead's
    story, the lead unchanged, and a re-send of it is evaluated again. Whatever is not the
    policy's fault (the database, no policy loaded on the worker, an evaluator process that
    cannot load one, the evaluation's own timeout) is retried by the lead, its events kept
    (workflows.lead: `waiting`)."""


@dataclass(frozen=True)
class Catalog:
    """The policy versions one lead's batch may meet: the active one and the lead's own."""

    active: CompiledPolicy
    pinned: CompiledPolicy | None = None
    # move | pin, as the activation said; "" reads the active file's own `rollout.running_leads`
    rollout: str = ""

    @property
    def moves(self) -> bool:
        if self.rollout:
            return self.rollout == "move"
        return self.active.policy.rollout.running_leads == "move"

    def choose(self, version: int | None) -> tuple[CompiledPolicy, str | None]:
        """The version to evaluate a lead with, and a note for its story when it moves."""
        active = self.active
        if version is None or version == active.version:
            return active, None
        if self.pinned is None or self.pinned.version != version:
            return active, f"policy v{version} is no longer loaded; moved to v{active.version}"
        if self.moves:  # a newer version, or an older one activated again (a rollback)
            return active, f"rollout of v{active.version} moved the lead from v{version}"
        return self.pinned, None


def evaluate_event(catalog: Catalog, lead: LeadState | None, event: Event, now: datetime,
                   version: int | None) -> Decision:
    """One event's Decision. Raises PolicyError (reject the event) or EngineError (retry)."""
    policy, note = catalog.choose(version)
    if lead is not None and lead.version != policy.version:
        lead = lead.model_copy(update={"policy": policy.name, "version": policy.version})
    try:
        decision = evaluate(policy, lead, event, now)
    except ChainLimitError as err:
        raise PolicyError(str(err)) from err
    if note:
        moved = StoryEntry(
            at=iso(now.timestamp()), event_id=event.id, event_type=event.type,
            from_state=decision.state_before, to_state=decision.state_before, rule=None,
            policy=policy.name, version=policy.version, why=note)
        decision = decision.model_copy(update={"story": [moved, *decision.story]})
    return decision


def evaluate_batch(catalog: Catalog, batch: EvaluateBatch) -> BatchResult:
    """Several events of one lead, in order, each seeing the lead as the one before left it; a
    policy error rejects only its event. EngineError propagates: nothing was applied yet."""
    lead, version = batch.lead, batch.version
    decisions: list[Decision | None] = []
    errors: list[str | None] = []
    for event in batch.events:
        try:
            decision = evaluate_event(catalog, lead, event, batch.now, version)
        except PolicyError as err:
            decisions.append(None)
            errors.append(str(err))
            continue
        decisions.append(decision)
        errors.append(None)
        lead, version = decision.lead, decision.version
    return BatchResult(decisions=decisions, errors=errors)


__all__ = ["BatchResult", "Catalog", "EngineError", "EvaluateBatch", "PolicyError", "evaluate_batch",
           "evaluate_event"]
