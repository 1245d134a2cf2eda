"""Activities of the lead lifecycle: the evaluator (run as a local activity over a batch of
queued events, so its Decisions are recorded in history and replay never re-runs rules) and
the checkpoint. Delivery is activities.delivery."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.evaluation import BatchResult, EvaluateBatch, evaluate_batch
from activities.evaluator_pool import EvaluatorPool, evaluate_remembered
from activities.policies import NoPolicy, PolicyStore
from activities.shadow import ShadowLeads, run_shadow
from leadflow.archive.endings import Endings
from leadflow.archive.events import Taken
from leadflow.archive.writer import ArchiveWriter
from leadflow.identity.aliases import Aliases
from leadflow.identity.merge import replay_apart
from rules.engine import EngineError
from rules.identity import merged_log
from rules.lifecycle import LeadEnding
from rules.models import Action, Decision, LeadState, Scores, StoryEntry

DEFAULT_RETENTION = 30 * 86400.0  # LEADFLOW_FINAL_RETENTION's default


class LinkRequest(BaseModel):
    aliases: list[str]
    lead: str
    at: datetime
    event_id: str = ""


class MergeRequest(BaseModel):
    survivor: str
    other: str
    identity: dict[str, Any]  # the survivor's e-mail and external id: the other's events take them
    version: int | None
    now: datetime


class MergeResult(BaseModel):
    """The survivor as both leads' events make it, replayed by its policy version."""

    lead: LeadState | None = None
    scores: Scores | None = None
    handoff: Action | None = None  # a hand-off the merged history opened that nobody answered
    decision: Decision | None = None  # the Decision that opened it
    received: list[str] = Field(default_factory=list)  # content either address was sent
    other_events: int = 0
    other_story: list[StoryEntry] = Field(default_factory=list)  # a closed other's, from its ending


def _measure(batch: EvaluateBatch, result: BatchResult, seconds: float) -> None:
    """Evaluations and their latency (a batch's time, per event), transitions by rule and version:
    each metric made once per batch, on the activity's meter."""
    meter = activity.metric_meter()
    evaluations = meter.create_counter("leadflow_evaluations", "Events evaluated, by outcome (error: the "
                                       "policy could not decide)")
    latency = meter.create_histogram_float("leadflow_evaluation_seconds", "Time to evaluate one event", "s")
    transitions = meter.create_counter("leadflow_transitions",
                                       "Lead state changes, by rule and policy version")
    each = seconds / max(1, len(batch.events))
    for decision in result.decisions:
        policy = {"policy": decision.policy, "version": str(decision.version)} if decision else {}
        outcome = "error" if decision is None else ("rejected" if decision.rejected else "decided")
        evaluations.add(1, {**policy, "outcome": outcome})
        latency.record(each, policy)
        for entry in decision.story if decision else []:
            if entry.from_state != entry.to_state:
                transitions.add(1, {"from_state": entry.from_state, "to_state": entry.to_state,
                                    "rule": entry.rule or "", "policy": entry.policy,
                                    "version": str(entry.version)})


class LeadActivities:
    def __init__(self, store: PolicyStore, evaluators: EvaluatorPool | None = None,
                 archive: ArchiveWriter | None = None, endings: Endings | None = None,
                 final_retention: float = DEFAULT_RETENTION, aliases: Aliases | None = None) -> None:
        self.aliases = aliases  # None: no merges (tests of the lifecycle alone)
        self.store = store
        self.endings = endings  # None: runs that end are not remembered (tests of the lifecycle alone)
        self.final_retention = final_retention
        self.evaluators = evaluators  # None: evaluate in this process (no deadline)
        self.archive = archive  # None: events are not archived (tests of the lifecycle alone)
        self.shadow_leads = ShadowLeads(archive.archive.ledger) if archive is not None else None

    @activity.defn(name="evaluate_events")
    async def evaluate_events(self, batch: EvaluateBatch) -> BatchResult:
        """Several queued events of one lead, in order; a policy error rejects only its event.

        Async: it waits for an evaluator process without holding a thread. In-process (no pool)
        it computes on the worker's event loop, with no hop to a thread and back: the engine
        holds the GIL anyway and an evaluation takes well under a millisecond.

        Then the events go into the archive, every one the lead took, whatever its policy makes
        of it (a later version may decide otherwise), with the state changes the Decisions made
        (the funnel) and what a version in shadow made of them; the answer waits for the write."""
        began = time.perf_counter()
        result = await self._decide(batch)
        _measure(batch, result, time.perf_counter() - began)
        result.retention = self.final_retention
        lead_id = activity.info().workflow_id or ""  # always set: this activity runs in LeadWorkflow
        if batch.lead is None and self.endings is not None:  # a run's first lead: has it ended before?
            try:
                result.earlier = await asyncio.to_thread(self.endings.of, lead_id)
            except Exception as err:  # the shared database: the lead waits for it (not the policy's fault)
                raise ApplicationError(f"the shared database (how earlier runs ended): {err}",
                                       type="DatabaseError") from err
        if self.archive is None or not batch.events:
            return result.slim(batch.lead)
        shadow = self.store.shadow()
        run = None
        if shadow is not None and self.shadow_leads is not None:
            run = await run_shadow(shadow, self.shadow_leads, lead_id, batch, result, self.evaluators)
        taken = Taken(lead_id, list(batch.events), batch.now.timestamp(), list(result.decisions), run)
        try:
            await self.archive.add(taken)
        except Exception as err:  # the lead must not go on with events the archive lacks
            raise ApplicationError(f"the event archive: {err}", type="ArchiveError") from err
        return result.slim(batch.lead)

    async def _decide(self, batch: EvaluateBatch) -> BatchResult:
        """The batch's Decisions. What is not the policy's fault raises a retryable error, so the
        lead keeps its events and tries again (workflows.lead): no policy loaded on this worker
        (the database unreadable when it started, say), or an engine or evaluator process that
        failed. The policy's own failures are per event (BatchResult.errors) and reject."""
        try:
            catalog = self.store.catalog(batch.version)
        except NoPolicy as err:
            raise ApplicationError(f"this worker has no policy to evaluate with: {err}",
                                   type="NoPolicy") from err
        try:
            if self.evaluators is not None:
                # most facts repeat: when the policy remembers every answer the batch needs, it
                # is evaluated here, sparing the round trip to a child (0.4-0.9 ms here)
                here = evaluate_remembered(catalog, batch)
                if here is not None:
                    return here
                return await self.evaluators.evaluate(catalog, batch)
            return evaluate_batch(catalog, batch)
        except EngineError as err:  # worth a retry: nothing of the batch was applied
            raise ApplicationError(str(err), type="EngineError") from err

    @activity.defn(name="record_ending")
    async def record_ending(self, ending: LeadEnding) -> None:
        """Remember how a run ended, for the lead's next run (its workflow completes next)."""
        if self.endings is not None:
            await asyncio.to_thread(self.endings.record, ending)

    @activity.defn(name="link_alias")
    async def link_alias(self, request: LinkRequest) -> None:
        """From now on the intake sends events for these ids to `lead`."""
        if self.aliases is None:
            raise ApplicationError("merging leads needs the shared database", non_retryable=True)
        await asyncio.to_thread(self.aliases.link, request.aliases, request.lead, request.at.timestamp(),
                                request.event_id)

    @activity.defn(name="merge_leads")
    async def merge_leads(self, request: MergeRequest) -> MergeResult:
        """Both leads' archived events, addressed to the survivor, replayed in time order by the
        survivor's policy version; and the content either of them was sent."""
        if self.archive is None:
            raise ApplicationError("merging leads needs the event archive", non_retryable=True)
        archive = self.archive.archive
        own = await asyncio.to_thread(lambda: list(archive.export(lead=request.survivor)))
        other = await asyncio.to_thread(lambda: list(archive.export(lead=request.other)))
        try:
            policy, _ = self.store.catalog(request.version).choose(request.version)
        except NoPolicy as err:
            raise ApplicationError(str(err), non_retryable=True) from err
        events = merged_log(own, other, request.identity)
        replayed = await asyncio.to_thread(replay_apart, policy.source, policy.file, request.survivor, events,
                                           request.now.isoformat()) if events else {}
        ledger = archive.ledger
        sent = await asyncio.to_thread(lambda: [
            row for lead in (request.survivor, request.other)
            for row in ledger.list(lead=lead, kind="email", limit=1000) if row["status"] == "sent"])
        ended = await asyncio.to_thread(self.endings.of, request.other) if self.endings is not None else []
        return MergeResult.model_validate({
            **{k: v for k, v in replayed.items() if k in ("lead", "scores", "handoff", "decision")},
            "received": sorted({row["subject"] for row in sent}), "other_events": len(other),
            "other_story": ended[-1].story if ended else []})

    @activity.defn(name="checkpoint")
    async def checkpoint(self) -> None:
        """Does nothing: the lead workflow calls it to end a long workflow task."""
