"""What the workflows take and answer: their inputs, the arguments of their signals and updates,
the answers of their queries and updates. Pydantic models, so Temporal's pydantic converter
carries them; each one's JSON is what the dict it replaced was on the wire (the same field names
in the same order, none added), so histories recorded before replay as they ran."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypeAlias

from pydantic import BaseModel, Field
from temporalio.common import RetryPolicy

from rules.lifecycle import Held, LeadEnding
from rules.models import LeadState, Scores, StoryEntry

# The no-op checkpoint activity may retry for as long as it takes.
CHECKPOINT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))


class LeadOptions(BaseModel):
    # Continue-as-new after this many events in one run, even if Temporal has not suggested it.
    max_events_per_run: int = 2000
    # Upsert search attributes (off only for servers without them registered).
    index: bool = True
    # A score that changed without a state change is indexed this many seconds later, or up to
    # twice as many (see workflows.lead.score_index_delay).
    score_index_seconds: float = 60
    story_limit: int = 500
    # seconds one delivery attempt (an e-mail, a webhook) may take before Temporal retries it,
    # on another worker if this one died; also the attempt's lease in the delivery ledger
    delivery_timeout: float = 60
    # seconds a hand-off task with no rep free waits before it looks at its queue again (a rep
    # back from away, a roster change); an answered task of its queue wakes it at once
    routing_retry: float = 300
    # An evaluation that fails for a reason outside the policy (the database, the evaluator
    # processes, a timeout) is tried again without end, its events kept: 1 s after the first
    # failure, doubling up to this many seconds between tries.
    evaluation_retry_cap: float = 60
    # After this many failed tries in one run (about four hours at the cap) the waiting events
    # travel to the next run (continue-as-new), so a long outage cannot outgrow the history.
    evaluation_tries_per_run: int = 250


class Waiting(BaseModel):
    """An evaluation that keeps failing for a reason outside the policy: since when, why (the
    last failure), how many tries so far. Its events wait in the lead, none is lost."""

    since: datetime
    reason: str
    tries: int = 0

    def says(self) -> str:
        return f"evaluation retrying since {self.since.isoformat()}: {self.reason}"


class LeadCarry(BaseModel):
    """Everything a lead workflow carries into its next run (continue-as-new)."""

    lead: LeadState | None = None
    scores: Scores = Field(default_factory=Scores)
    story: list[StoryEntry] = Field(default_factory=list)
    story_dropped: int = 0
    seen: list[str] = Field(default_factory=list)  # event ids as runs before `seen_keys` carried them
    seen_keys: list[str] = Field(default_factory=list)  # digests of the event ids applied, newest last
    waiting: Waiting | None = None
    pending: list[Any] = Field(default_factory=list)
    next_check_at: datetime | None = None
    handoff_seq: int = 0
    open_handoff: str | None = None
    events: int = 0
    rejected: int = 0
    runs: int = 1
    # in a final state since then (None: not in one); the run completes `retention` seconds later
    final_since: datetime | None = None
    retention: float | None = None
    earlier: list[LeadEnding] = Field(default_factory=list)  # how the lead's earlier runs ended
    # the other ids of this person, merged into this lead: {lead_id, email?, external_id?, at}
    aliases: list[dict[str, Any]] = Field(default_factory=list)
    received: list[str] = Field(default_factory=list)  # content sent to either address before a merge
    # the lead's marketing e-mails of the last week (gone or held) and those held for their slot:
    # rules.manners, under a policy with `delivery:`
    booked: list[datetime] = Field(default_factory=list)
    held: list[Held] = Field(default_factory=list)
    # (time, fit, interest, intent, total) after each scored event, the newest SCORE_POINTS:
    # the lead's page draws them
    score_history: list[tuple[str, float, float, float, float]] = Field(default_factory=list)


SCORE_POINTS = 200


class HandoffInput(BaseModel):
    lead_workflow_id: str
    lead_email: str | None = None
    queue: str
    sla_seconds: float
    escalate_to: str | None = None
    reason: str | None = None
    policy: str
    version: int
    lead_story: dict[str, Any] = Field(default_factory=dict)
    index: bool = True
    delivery_timeout: float = 60
    route: str | None = None  # the routing rule that chose the queue
    breach_steps: list[str] = Field(default_factory=list)  # per breach: `reassign`, `escalate:<queue>`
    # seconds a task without a rep waits before looking at its queue again
    routing_retry: float = 300


class RejectInput(BaseModel):
    reason: str
    by: str = ""


class AcceptInput(BaseModel):
    by: str = ""


class ReassignInput(BaseModel):
    queue: str
    by: str = ""


# -- LeadWorkflow's messages ---------------------------------------------------------------------

# An event as its sender wrote it: the `event` signal's and the `submit` update's argument, and the
# sign-up LeadWorkflow.run starts with. Deliberately not rules.models.Event, nor even a dict: the
# lead validates it itself (LeadWorkflow._admit), so a malformed event, however malformed, is
# rejected into the lead's story with the field at fault (and a `submit` answered {"rejected": ...}).
# A typed argument is decoded by the SDK before any handler runs: one that does not fit is dropped
# with a log line (a signal) or refused with no story line (an update), and replay would differ
# (tests/workflows/histories/rejected-events-0.json holds an event that is a JSON string). Senders build a
# JSON object in the shape of rules.models.Event.
RawEvent: TypeAlias = Any

# What the `submit` update answers: the event's Decision as JSON without its lead
# (rules.models.Decision), or {"rejected": why}, {"duplicate": true, "event_id": ...} or
# {"merged_into": lead id}. A JSON object rather than a model: its readers (the API's ?wait=true,
# `leadflow send --wait`) pass the Decision on as it is, and a union of those shapes has no field
# that tells them apart for a converter to choose by.
Answer: TypeAlias = dict[str, Any]


class Note(BaseModel):
    """The `note` signal: a line for the lead's story from elsewhere (a hand-off's)."""

    type: str = "delivery"  # the story line's event type
    why: str = ""


class MergeOrder(BaseModel):
    """The `merge_into` signal: another lead is this person too and takes this one over."""

    survivor: str = ""
    event_id: str | None = None  # the `identify` event that merged them


class Handover(BaseModel):
    """The `absorb` signal: what a lead merged into another hands over to it."""

    lead_id: str
    story: list[StoryEntry] = Field(default_factory=list)
    open_handoff: str | None = None
    seen_keys: list[str] = Field(default_factory=list)  # digests of the event ids it applied
    aliases: list[dict[str, Any]] = Field(default_factory=list)
    events: int = 0
    identity: dict[str, Any] = Field(default_factory=dict)
    # event ids as leads sent them before `seen_keys`: read, never sent
    seen: list[str] = Field(default_factory=list, exclude=True)


class LeadView(BaseModel):
    """The `state` query: the lead as its workflow knows it (the API's and the pages' lead).
    Every field has a default: a worker from before a field was added answers without it."""

    lead_id: str = ""
    state: str | None = None
    policy: str | None = None
    version: int | None = None
    scores: dict[str, Any] = Field(default_factory=dict)
    facts: dict[str, Any] = Field(default_factory=dict)
    profile: dict[str, Any] = Field(default_factory=dict)
    track: dict[str, Any] | None = None
    open_handoff: str | None = None
    next_check_at: str | None = None
    events: int = 0
    rejected: int = 0
    runs: int = 1
    story: list[dict[str, Any]] = Field(default_factory=list)
    story_dropped: int = 0
    score_history: list[list[Any]] = Field(default_factory=list)  # [time, fit, interest, intent, total]
    recent: list[dict[str, Any]] = Field(default_factory=list)
    bant: list[str] = Field(default_factory=list)
    final_since: str | None = None
    ends_at: str | None = None
    earlier: list[dict[str, Any]] = Field(default_factory=list)
    aliases: list[dict[str, Any]] = Field(default_factory=list)
    # an evaluation failing outside the policy (the database down): its events wait
    waiting: str | None = None
    # marketing e-mails the policy's delivery manners hold for a later slot: {content, until}
    held: list[dict[str, Any]] = Field(default_factory=list)


# -- HandoffWorkflow's messages ------------------------------------------------------------------


class Withdrawal(BaseModel):
    """The `withdraw` signal: nobody needs to answer the task any more."""

    reason: str = ""


class TaskView(BaseModel):
    """The `task` query, and what the task's updates and its run answer: the task as its
    workflow knows it. Every field has a default: a parent lead decodes its hand-off's result by
    this model, and runs from before routing (tests/workflows/histories) ended without rep, rep_name, route
    and waiting; a worker from before a field was added answers a query without it."""

    id: str = ""
    status: str = "open"
    queue: str = ""
    lead_workflow_id: str | None = None
    lead_email: str | None = None
    sla_seconds: float | None = None
    due_at: str | None = None
    created_at: str | None = None
    reason: str | None = None
    policy: str | None = None
    version: int | None = None
    answer: dict[str, Any] | None = None
    log: list[dict[str, Any]] = Field(default_factory=list)
    lead_story: dict[str, Any] = Field(default_factory=dict)
    rep: str | None = None
    rep_name: str | None = None
    route: str | None = None
    waiting: str | None = None
