"""Activities of the lead lifecycle: the evaluator (run as a local activity, so its Decision
is recorded in history and replay never re-runs rules) and outbox delivery."""

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


class OutboxMessage(BaseModel):
    key: str
    lead: str
    kind: str
    payload: dict = Field(default_factory=dict)


class LeadActivities:
    def __init__(self, store: PolicyStore, outbox: Outbox) -> None:
        self.store = store
        self.outbox = outbox

    @activity.defn(name="evaluate_event")
    def evaluate_event(self, req: EvaluateRequest) -> Decision:
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

    @activity.defn(name="deliver")
    def deliver(self, message: OutboxMessage) -> bool:
        return self.outbox.put(message.key, message.lead, message.kind, message.payload)
