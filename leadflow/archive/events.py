"""The event archive: every event a lead evaluated, kept in the shared database (the delivery
ledger's, so every worker on every machine writes to one archive) with its id, its time and its
lead. Nothing in a workflow's history is needed to read it back: events from before any
continue-as-new are here like the rest.

`export` writes the log that `leadflow policy simulate` reads: one event a line, as the lead
evaluated it (`at` is when it counted), with `lead_id` beside the event's own fields. Sales
answers (`sales_accept`, `sales_reject`) and hard bounces are events like any other; an SLA
breach is kept too, though a simulation makes its own from the hand-off's deadline."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_

from leadflow.db.database import Database
from leadflow.db.schema import events as table
from leadflow.db.schema import shadow_decisions, shadow_leads, transitions
from rules.evaluate import iso
from rules.models import Decision, Event, LeadState

DERIVED = ("check",)  # made by the lead's own timer: a simulation schedules its own


@dataclass(frozen=True)
class ShadowRun:
    """What the version in shadow made of a batch: never acted on, only kept."""

    sha: str
    lead: LeadState | None  # where the shadow's next batch starts from
    steps: list[tuple[str, dict[str, Any], dict[str, Any]]]  # (event id, live brief, shadow brief)


@dataclass(frozen=True)
class Taken:
    """One batch of a lead's events, as its evaluation took them, with what came of them."""

    lead: str
    events: list[Event]  # each with its id (rules.identity.with_id)
    at: float  # unix seconds the lead evaluated them (its workflow time)
    decisions: list[Decision | None] = field(default_factory=list)  # the live ones, per event
    shadow: ShadowRun | None = None


class EventArchive:
    def __init__(self, ledger: Database) -> None:
        self.ledger = ledger
        self._insert = ledger.insert(table)
        self._moves = ledger.insert(transitions).on_conflict_do_nothing(
            index_elements=["lead", "event_id", "seq"])
        self._shadow_steps = ledger.insert(shadow_decisions).on_conflict_do_nothing(
            index_elements=["sha", "lead", "event_id"])
        upsert = ledger.insert(shadow_leads)
        self._shadow_leads = upsert.on_conflict_do_update(
            index_elements=["sha", "lead"], set_={"state": upsert.excluded.state,
                                                  "updated_at": upsert.excluded.updated_at})

    def add(self, batches: Iterable[Taken]) -> None:
        """Keep the batches' events, the state changes their Decisions made and what a shadow
        version made of them; what was kept before (a retried evaluation) stays as it was."""
        rows: list[dict[str, Any]] = []
        moves: list[dict[str, Any]] = []
        steps: list[dict[str, Any]] = []
        shadows: list[dict[str, Any]] = []
        for batch in batches:
            moves.extend(_moves(batch))
            if batch.shadow is not None:
                steps.extend(_shadow_steps(batch, batch.shadow))
                if batch.shadow.lead is not None:
                    shadows.append({"sha": batch.shadow.sha, "lead": batch.lead, "updated_at": batch.at,
                                    "state": batch.shadow.lead.model_dump_json()})
            for seq, taken in enumerate(batch.events):
                if taken.type in DERIVED:
                    continue
                # made into JSON here, on the writer's thread, not on the evaluation's way
                event = taken.model_dump(mode="json", exclude_none=True)
                at = taken.at.timestamp() if taken.at else batch.at
                rows.append({"lead": batch.lead, "id": event["id"], "type": event["type"], "at": at,
                             "taken_at": batch.at, "seq": seq,
                             "body": json.dumps(event, separators=(",", ":"), ensure_ascii=False)})
        if not (rows or moves or steps or shadows):
            return
        with self.ledger.writing() as db:
            if rows:
                db.execute(self._insert.on_conflict_do_nothing(index_elements=["lead", "id"]), rows)
            if moves:
                db.execute(self._moves, moves)
            if steps:
                db.execute(self._shadow_steps, steps)
            if shadows:
                db.execute(self._shadow_leads, shadows)

    def export(self, since: datetime | None = None, until: datetime | None = None,
               lead: str | None = None, page: int = 5000) -> Iterator[dict[str, Any]]:
        """The events in the order their leads took them (`at` from `since`, before `until`)."""
        c = table.c
        query = select(c.lead, c.at, c.taken_at, c.seq, c.id, c.body)
        if since is not None:
            query = query.where(c.at >= since.timestamp())
        if until is not None:
            query = query.where(c.at < until.timestamp())
        if lead is not None:
            query = query.where(c.lead == lead)
        query = query.order_by(c.taken_at, c.lead, c.seq, c.id)
        after: tuple[float, str, int, str] | None = None
        while True:  # keyset pages: a long export neither holds one cursor open nor skips rows
            paged = query
            if after is not None:
                paged = paged.where(tuple_(c.taken_at, c.lead, c.seq, c.id) > tuple_(*after))
            with self.ledger.engine.connect() as db:
                rows = db.execute(paged.limit(page)).all()
            for row in rows:
                event = json.loads(row.body)
                yield {**event, "at": event.get("at") or iso(row.at), "lead_id": row.lead}
            if len(rows) < page:
                return
            last = rows[-1]
            after = (last.taken_at, last.lead, last.seq, last.id)


def _moves(batch: Taken) -> Iterator[dict[str, Any]]:
    """The story lines that moved the lead from one state to another: the funnel's facts."""
    for event, decision in zip(batch.events, batch.decisions, strict=False):
        if decision is None or decision.rejected is not None:
            continue
        for seq, entry in enumerate(decision.story):
            if entry.from_state == entry.to_state:
                continue
            yield {"lead": batch.lead, "event_id": entry.event_id or event.id or "", "seq": seq,
                   "at": datetime.fromisoformat(entry.at.replace("Z", "+00:00")).timestamp(),
                   "from_state": entry.from_state, "to_state": entry.to_state, "rule": entry.rule or "",
                   "policy": entry.policy or decision.policy, "version": entry.version or decision.version,
                   "why": entry.why or ""}


def _shadow_steps(batch: Taken, run: ShadowRun) -> Iterator[dict[str, Any]]:
    by_id = {e.id: e for e in batch.events}
    for seq, (event_id, live, shadow) in enumerate(run.steps):
        event = by_id.get(event_id)
        at = event.at.timestamp() if event is not None and event.at else batch.at
        yield {"sha": run.sha, "lead": batch.lead, "event_id": event_id, "at": at, "taken_at": batch.at,
               "seq": seq, "live": json.dumps(live, separators=(",", ":")),
               "shadow": json.dumps(shadow, separators=(",", ":"))}
