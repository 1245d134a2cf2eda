"""Visitors of the customer's sites, in the shared database: each browser's first-party id, the
page views it made while anonymous (at most MAX_VIEWS), and the lead it became. Every API
process reads and writes the same rows, so a visitor known to one is known to all."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update

from leadflow.db.database import Database
from leadflow.db.per_ledger import per_ledger
from leadflow.db.schema import visitors, visits

MAX_VIEWS = 200  # page views kept per anonymous visitor; more are dropped (and counted)


@dataclass(frozen=True)
class Known:
    """A visitor that is a lead: its page views go to the lead."""

    lead: str
    ref: dict[str, str]  # {"email": ...} or {"external_id": ...}


class Visitors:
    def __init__(self, ledger: Database, most: int = MAX_VIEWS) -> None:
        self.ledger, self.most = ledger, most
        self._new = ledger.insert(visitors).on_conflict_do_nothing(index_elements=["id"])

    def known(self, visitor: str) -> Known | None:
        with self.ledger.engine.connect() as db:
            row = db.execute(select(visitors.c.lead, visitors.c.ref).where(visitors.c.id == visitor)).first()
        return Known(row.lead, json.loads(row.ref)) if row is not None and row.lead else None

    def view(self, visitor: str, at: float, body: dict[str, Any], now: float) -> Known | bool:
        """Keep an anonymous visitor's page view: True when kept, False when the visitor has
        MAX_VIEWS already; the lead when the visitor is known (its views go there instead)."""
        v = visitors.c
        with self.ledger.writing() as db:
            db.execute(self._new, {"id": visitor, "first_at": now, "last_at": now, "views": 0})
            row = db.execute(select(v.lead, v.ref, v.views).where(v.id == visitor)).one()
            if row.lead:
                return Known(row.lead, json.loads(row.ref))
            if row.views >= self.most:
                return False
            db.execute(update(visitors).where(v.id == visitor).values(views=v.views + 1, last_at=now))
            db.execute(visits.insert().values(visitor=visitor, at=at,
                                              body=json.dumps(body, separators=(",", ":"))))
        return True

    def name(self, visitor: str, lead: str, ref: dict[str, str], now: float
             ) -> list[tuple[float, dict[str, Any]]]:
        """The visitor is `lead` from now on: its anonymous page views, oldest first, handed over
        (and no longer kept here). A visitor known as another lead becomes this one: the browser
        is now this person's."""
        v = visitors.c
        with self.ledger.writing() as db:
            db.execute(self._new, {"id": visitor, "first_at": now, "last_at": now, "views": 0})
            rows = db.execute(select(visits.c.at, visits.c.body).where(visits.c.visitor == visitor)
                              .order_by(visits.c.at, visits.c.id)).all()
            db.execute(delete(visits).where(visits.c.visitor == visitor))
            db.execute(update(visitors).where(v.id == visitor).values(
                lead=lead, ref=json.dumps(ref, separators=(",", ":")), views=0, last_at=now))
        return [(row.at, json.loads(row.body)) for row in rows]

    def sweep(self, before: float) -> int:
        """Forget anonymous visitors not seen since `before`, with their page views."""
        v = visitors.c
        with self.ledger.writing() as db:
            stale = select(v.id).where(v.lead.is_(None), v.last_at < before)
            gone = db.execute(delete(visits).where(visits.c.visitor.in_(stale))).rowcount
            db.execute(delete(visitors).where(v.lead.is_(None), v.last_at < before))
        return int(gone or 0)


def visitors_of(ledger: Database) -> Visitors:
    return per_ledger(Visitors, ledger)
