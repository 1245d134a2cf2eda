"""Activities of the lead lifecycle: the evaluator (run as a local activity over a batch of
queued events, so its Decisions are recorded in history and replay never re-runs rules) and
outbox delivery."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.outbox import Outbox
from activities.policies import NoPolicy, PolicyStore
from rules.engine import EngineError
from rules.evaluate import ChainLimitError, evaluate, iso
from rules.models import Decision, Event, LeadState, StoryEntry


class EvaluateRequest(BaseModel):
    lead: LeadState | None
    event: Event
    now: datetime
    version: int | None = None  # the version the lead is pinned to; None at capture


class EvaluateBatch(BaseModel):
    lead: LeadState | None
    events: list[Event]
    now: datetime
    version: int | None = None


class BatchResult(BaseModel):
    """One entry per event: its Decision, or (None and) why the policy could not decide."""

    decisions: list[Decision | None]
    errors: list[str | None]


class OutboxMessage(BaseModel):
    key: str
    lead: str
    kind: str
    payload: dict = Field(default_factory=dict)


class LeadActivities:
    def __init__(self, store: PolicyStore, outbox: Outbox) -> None:
        self.store = store
        self.outbox = outbox

    def evaluate_event(self, req: EvaluateRequest) -> Decision:
        """One event (the batch activity below calls this for each of its events)."""
        try:
            policy, note = self.store.choose(req.version)
            lead = req.lead
            if lead is not None and lead.version != policy.version:
                lead = lead.model_copy(update={"policy": policy.name, "version": policy.version})
            decision = evaluate(policy, lead, req.event, req.now)
        except (ChainLimitError, NoPolicy) as err:
            raise ApplicationError(str(err), type="PolicyError", non_retryable=True) from err
        except EngineError as err:  # worth a retry: the session was deleted, nothing leaked
            raise ApplicationError(str(err), type="EngineError") from err
        if note:
            moved = StoryEntry(
                at=iso(req.now.timestamp()), event_id=req.event.id, event_type=req.event.type,
                from_state=decision.state_before, to_state=decision.state_before, rule=None,
                policy=policy.name, version=policy.version, why=note)
            decision = decision.model_copy(update={"story": [moved, *decision.story]})
        return decision

    @activity.defn(name="evaluate_events")
    async def evaluate_events(self, batch: EvaluateBatch) -> BatchResult:
        """Several queued events of one lead, in order; a policy error rejects only its event.

        Async although it computes: it runs on the worker's event loop, with no hop to a thread
        and back. The engine holds the GIL anyway (threads would not run it in parallel), an
        evaluation takes well under a millisecond and `limits.max_chain` bounds it."""
        lead, version = batch.lead, batch.version
        decisions: list[Decision | None] = []
        errors: list[str | None] = []
        for event in batch.events:
            try:
                decision = self.evaluate_event(EvaluateRequest(lead=lead, event=event, now=batch.now,
                                                               version=version))
            except ApplicationError as err:
                if not err.non_retryable:
                    raise  # the engine failed: retry the whole batch, nothing was applied
                decisions.append(None)
                errors.append(err.message)
                continue
            decisions.append(decision)
            errors.append(None)
            lead, version = decision.lead, decision.version
        return BatchResult(decisions=decisions, errors=errors)

    @activity.defn(name="checkpoint")
    async def checkpoint(self) -> None:
        """Does nothing: the lead workflow calls it to end a long workflow task."""

    @activity.defn(name="deliver")
    def deliver(self, message: OutboxMessage) -> bool:
        return self.outbox.put(message.key, message.lead, message.kind, message.payload)
