"""How each run of a lead ended (workflows.types.LeadEnding), in the shared database: written
when a run completes, read when the lead's next run begins."""

from __future__ import annotations

from sqlalchemy import select

from leadflow.db.database import Database
from leadflow.db.schema import endings as table
from rules.lifecycle import LeadEnding

KEPT = 10  # earlier runs a new run is told of, the newest


class Endings:
    def __init__(self, ledger: Database) -> None:
        self.ledger = ledger
        self._insert = ledger.insert(table).on_conflict_do_nothing(index_elements=["lead", "run_id"])

    def record(self, ending: LeadEnding) -> None:
        """Once per run: a retried activity writes nothing more."""
        with self.ledger.writing() as db:
            db.execute(self._insert.values(
                lead=ending.lead_id, run_id=ending.run_id, state=ending.state,
                since=ending.since.timestamp(), ended_at=ending.ended_at.timestamp(),
                body=ending.model_dump_json()))

    def of(self, lead_id: str) -> list[LeadEnding]:
        """The lead's ended runs, oldest first (the newest KEPT)."""
        query = (select(table.c.body).where(table.c.lead == lead_id)
                 .order_by(table.c.ended_at.desc()).limit(KEPT))
        with self.ledger.engine.connect() as db:
            rows = db.execute(query).scalars().all()
        return [LeadEnding.model_validate_json(body) for body in reversed(rows)]
