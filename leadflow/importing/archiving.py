"""Imported leads into the event archive, once: what is there already (the same lead and event
id, from an earlier import or from the live lead) is counted and left as it is, through the
archive's own writer (`EventArchive.add`, insert-or-nothing on `(lead, id)`), one transaction per
batch of rows.

Each lead's events go as one batch taken at its sign-up's time, in their order (`taken_at`,
`seq`): `leadflow events export` lists them where they happened among the other leads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from leadflow.archive.events import DERIVED, EventArchive, Taken
from leadflow.db.database import Database
from leadflow.db.schema import events as table
from rules.models import Event

LEADS_A_QUERY = 500  # leads whose archived ids one query asks for


@dataclass
class Written:
    new: int = 0
    already: int = 0


class ArchiveWriter:
    """`ledger` None: nothing is archived yet (a dry run on a database not made yet)."""

    def __init__(self, ledger: Database | None, dry_run: bool) -> None:
        self.ledger, self.dry_run = ledger, dry_run
        self.archive = EventArchive(ledger) if ledger is not None and not dry_run else None

    def known(self, leads: Iterable[str]) -> set[tuple[str, str]]:
        """The (lead, event id) pairs the archive holds for these leads."""
        if self.ledger is None:
            return set()
        wanted = sorted(set(leads))
        found: set[tuple[str, str]] = set()
        c = table.c
        with self.ledger.engine.connect() as db:
            for start in range(0, len(wanted), LEADS_A_QUERY):
                part = wanted[start:start + LEADS_A_QUERY]
                found.update((row.lead, row.id) for row in db.execute(select(c.lead, c.id)
                                                                      .where(c.lead.in_(part))))
        return found

    def write(self, leads: list[tuple[str, list[Event]]]) -> Written:
        """Each lead's events kept (unless a dry run); how many were new and how many there."""
        kept = self.known(key for key, _ in leads)
        written = Written()
        batches = []
        for key, events in leads:
            archived = [e for e in events if e.type not in DERIVED]
            new = sum((key, e.id) not in kept for e in archived)
            written.new += new
            written.already += len(archived) - new
            if new:
                at = min((e.at for e in events if e.at is not None), default=None)
                batches.append(Taken(key, events, at.timestamp() if at else 0.0))
        if self.archive is not None and batches:
            self.archive.add(batches)
        return written
