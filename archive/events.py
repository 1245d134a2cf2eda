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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_

from delivery.ledger import Ledger
from delivery.schema import events as table
from rules.evaluate import iso
from rules.models import Event

DERIVED = ("check",)  # made by the lead's own timer: a simulation schedules its own


@dataclass(frozen=True)
class Taken:
    """One batch of a lead's events, as its evaluation took them."""

    lead: str
    events: list[Event]  # each with its id (rules.identity.with_id)
    at: float  # unix seconds the lead evaluated them (its workflow time)


class EventArchive:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._insert = ledger.insert(table)

    def add(self, batches: Iterable[Taken]) -> None:
        """Keep the batches' events; an event kept before (a retried evaluation) stays as it was."""
        rows = []
        for batch in batches:
            for seq, taken in enumerate(batch.events):
                if taken.type in DERIVED:
                    continue
                # made into JSON here, on the writer's thread, not on the evaluation's way
                event = taken.model_dump(mode="json", exclude_none=True)
                at = taken.at.timestamp() if taken.at else batch.at
                rows.append({"lead": batch.lead, "id": event["id"], "type": event["type"], "at": at,
                             "taken_at": batch.at, "seq": seq,
                             "body": json.dumps(event, separators=(",", ":"), ensure_ascii=False)})
        if not rows:
            return
        with self.ledger.writing() as db:
            db.execute(self._insert.on_conflict_do_nothing(index_elements=["lead", "id"]), rows)

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
