"""Activities of retention (LEADFLOW_RETENTION_EVENTS, LEADFLOW_RETENTION_DELIVERIES): rows of
the shared database older than a cutoff go, a batch at a time, while intake goes on writing.

Each batch finds its rows' keys in a read of its own (in SQLite's WAL and in PostgreSQL a read
holds up no writer, however long it scans) and deletes them by key, the age checked again, in a
short write transaction: the writer is held for the delete and nothing else. A pause between
batches, as long as the batch took, gives the writers waiting behind it their turn.

The archive is the events and what was made of them: the funnel's transitions and a shadow
version's Decisions and leads. The ledger gives up only deliveries that ended (FINAL): one still
`sending` or `retrying` keeps its claim; bounce and complaint reports go by their own age.
Suppressions are never pruned: they are the promise not to mail an address again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Column, ColumnElement, Table, and_, cast, literal_column, select, tuple_
from sqlalchemy.types import UserDefinedType
from temporalio import activity

from leadflow.db.database import FINAL, Database
from leadflow.db.schema import deliveries, events, mail_reports, shadow_decisions, shadow_leads, transitions

BATCH_ROWS = 5000  # rows a write transaction deletes (measured: docs/operations.md#retention)
BUDGET_SECONDS = 240.0  # work per activity call before handing back to the workflow
MIN_PAUSE = 0.005  # seconds between batches, however quick the last one was


class TID(UserDefinedType[str]):
    """PostgreSQL's tid, the type of ctid: read as text, bound back as a tid."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "tid"

    def bind_expression(self, bindvalue: Any) -> Any:
        return cast(bindvalue, TID())


@dataclass(frozen=True)
class Target:
    """A table retention prunes: by which column's age, and what else a row must be to go."""

    table: Table
    age: Column[Any]
    only: ColumnElement[bool] | None = None


ARCHIVE = (Target(events, events.c.at), Target(transitions, transitions.c.at),
           Target(shadow_decisions, shadow_decisions.c.at), Target(shadow_leads, shadow_leads.c.updated_at))
# a bounce or complaint report goes with the deliveries of its time (its suppression stays)
LEDGER = (Target(deliveries, deliveries.c.updated_at, deliveries.c.status.in_(FINAL)),
          Target(mail_reports, mail_reports.c.at))


class PruneRequest(BaseModel):
    before: float  # unix seconds: rows older than this go
    batch: int = BATCH_ROWS
    budget: float = BUDGET_SECONDS


class Pruned(BaseModel):
    """What one or more calls deleted."""

    rows: dict[str, int] = Field(default_factory=dict)  # per table
    batches: int = 0
    longest: float = 0.0  # seconds: the longest write transaction
    done: bool = True  # False: the budget ran out before the last row older than the cutoff

    def add(self, other: Pruned) -> Pruned:
        rows = dict(self.rows)
        for table, n in other.rows.items():
            rows[table] = rows.get(table, 0) + n
        return Pruned(rows=rows, batches=self.batches + other.batches,
                      longest=max(self.longest, other.longest), done=other.done)


class Pruner:
    """The batches themselves, with no Temporal in them (bench/prune.py times them alone)."""

    def __init__(self, ledger: Database) -> None:
        self.ledger = ledger
        self._dialect = ledger.engine.dialect.name

    def _keys(self, target: Target) -> Sequence[ColumnElement[Any]]:
        """What names a row for its delete: SQLite's rowid (one integer, its table's own
        b-tree), PostgreSQL's ctid (where the row lies: a batch of 5,000 (lead, id) pairs took
        1.1 s there, by ctid 0.14 s; bench/prune.py), else the primary key. A ctid the row
        left since the read may name another row by then; the age checked again in the delete
        keeps any row it takes one that was due to go."""
        if self._dialect == "sqlite":
            return (literal_column("rowid"),)
        if self._dialect == "postgresql":
            return (literal_column("ctid", TID()),)
        return tuple(target.table.primary_key.columns)

    def _old(self, target: Target, before: float) -> ColumnElement[bool]:
        return and_(target.age < before, target.only) if target.only is not None else target.age < before

    def batch(self, target: Target, before: float, rows: int) -> tuple[int, float]:
        """Delete up to `rows` rows older than `before`: how many went and how long the write
        transaction took (0 when none were found)."""
        keys = self._keys(target)
        with self.ledger.engine.connect() as db:
            found = [tuple(row) for row in db.execute(
                select(*keys).where(self._old(target, before)).limit(rows))]
        if not found:
            return 0, 0.0
        named = keys[0].in_([k[0] for k in found]) if len(keys) == 1 else tuple_(*keys).in_(found)
        begin = time.perf_counter()
        with self.ledger.writing() as db:  # the age again: a row touched since the read stays
            gone = db.execute(target.table.delete().where(named, self._old(target, before))).rowcount
        return int(gone or 0), time.perf_counter() - begin


class PruneActivities:
    def __init__(self, ledger: Database) -> None:
        self.pruner = Pruner(ledger)

    @activity.defn(name="prune_archive")
    async def prune_archive(self, request: PruneRequest) -> Pruned:
        """Events older than the cutoff, and the transitions and shadow rows as old."""
        return await self._prune(ARCHIVE, request)

    @activity.defn(name="prune_ledger")
    async def prune_ledger(self, request: PruneRequest) -> Pruned:
        """Deliveries that ended before the cutoff, and bounce and complaint reports as old."""
        return await self._prune(LEDGER, request)

    async def _prune(self, targets: Sequence[Target], request: PruneRequest) -> Pruned:
        """Batch after batch until no row of `targets` is older than the cutoff or the budget is
        spent. A call retried after a worker died starts over where the rows are: what went is
        gone, so the work is never done twice."""
        started = time.monotonic()
        result = Pruned()
        for target in targets:
            while True:  # a batch at least per call, so a call always gets somewhere
                gone, took = await asyncio.to_thread(self.pruner.batch, target, request.before, request.batch)
                if not gone and not took:
                    break
                name = target.table.name
                result.rows[name] = result.rows.get(name, 0) + gone
                result.batches += 1
                result.longest = max(result.longest, took)
                activity.heartbeat(result.rows)
                if time.monotonic() - started > request.budget:
                    return result.model_copy(update={"done": False})
                await asyncio.sleep(max(MIN_PAUSE, took))
        return result
