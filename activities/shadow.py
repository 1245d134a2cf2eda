"""A version in shadow: every live event is evaluated by it too, in the same local activity,
from the lead as the shadow version has seen it so far (kept in the shared database, so any
worker can take the lead's next batch). Its Decisions are kept beside the live ones and never
acted on: no transition, no e-mail, no task. A shadow that fails costs only its own record.

What the shadow sees is what the live lead took: the same events at the same moments, the live
lead's checks and the answers sales gave to live hand-offs; its own timers do not run."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import and_, select

from activities.evaluation import BatchResult, Catalog, EvaluateBatch, evaluate_batch
from activities.evaluator_pool import EvaluatorPool
from leadflow.archive.events import ShadowRun
from leadflow.db.database import Database
from leadflow.db.schema import shadow_leads
from rules.compile import CompiledPolicy
from rules.models import Decision, LeadState

log = logging.getLogger("leadflow.shadow")


def brief(event_type: str, decision: Decision | None, error: str | None) -> dict[str, Any]:
    """A Decision in short: what a shadow report compares."""
    if decision is None:
        return {"type": event_type, "error": error or "no decision"}
    out: dict[str, Any] = {"type": event_type, "version": decision.version, "before": decision.state_before,
                           "state": decision.state, "fired": [f.rule for f in decision.fired],
                           "transitions": [f"{e.rule}: {e.from_state} -> {e.to_state}"
                                           for e in decision.story if e.rule]}
    if decision.rejected is not None:
        out["rejected"] = decision.rejected
    handoffs = [a.queue or "sales" for a in decision.actions if a.kind == "create_handoff"]
    if handoffs:
        out["handoff"] = handoffs[0]
    return out


class ShadowLeads:
    """Where each lead stands for a shadow version (read per batch: the lead may have been on
    another worker last time)."""

    def __init__(self, ledger: Database) -> None:
        self.ledger = ledger

    def get(self, sha: str, lead: str) -> tuple[bool, LeadState | None]:
        with self.ledger.engine.connect() as db:
            row = db.execute(select(shadow_leads.c.state).where(and_(
                shadow_leads.c.sha == sha, shadow_leads.c.lead == lead))).first()
        if row is None:
            return False, None
        return True, LeadState.model_validate_json(row.state)


async def run_shadow(policy: CompiledPolicy, leads: ShadowLeads, lead_id: str, batch: EvaluateBatch,
                     live: BatchResult, evaluators: EvaluatorPool | None) -> ShadowRun | None:
    """The shadow's Decisions for the batch, or None when it could not evaluate (logged)."""
    try:
        known, lead = await asyncio.to_thread(leads.get, policy.sha, lead_id)
        if not known:  # the shadow starts where the live lead stands when it first meets it
            lead = batch.lead
        shadow_batch = EvaluateBatch(lead=lead, events=batch.events, now=batch.now, version=policy.version)
        catalog = Catalog(policy, None, "move")
        result = (await evaluators.evaluate(catalog, shadow_batch) if evaluators is not None
                  else evaluate_batch(catalog, shadow_batch))
    except Exception as err:  # the shadow must never cost the live lead anything
        log.warning("shadow v%s could not evaluate a batch of %s: %s", policy.version, lead_id, err,
                    extra={"lead_id": lead_id})
        return None
    last = lead
    for decision in result.decisions:
        if decision is not None:
            last = decision.lead
    steps = [(event.id or "", brief(event.type, ld, le), brief(event.type, sd, se))
             for event, ld, le, sd, se in zip(batch.events, live.decisions, live.errors, result.decisions,
                                              result.errors, strict=True)]
    return ShadowRun(policy.sha, last, steps)
