"""Which lead an id now is, in the shared database: after a merge, events sent to the merged
lead's address (or to an external id named the same person) reach the lead that survived."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update

from leadflow.db.database import Database
from leadflow.db.schema import lead_aliases as table

MAX_HOPS = 8  # a chain of merges is flattened when made; this only guards a hand-made loop


class Aliases:
    def __init__(self, ledger: Database) -> None:
        self.ledger = ledger
        upsert = ledger.insert(table)
        self._link = upsert.on_conflict_do_update(index_elements=["alias"], set_={
            "lead": upsert.excluded.lead, "at": upsert.excluded.at, "event_id": upsert.excluded.event_id})

    def link(self, aliases: Iterable[str], lead: str, at: float, event_id: str = "") -> None:
        """Each alias is `lead` from now on, and so is whatever was an alias of an alias."""
        names = [a for a in dict.fromkeys(aliases) if a != lead]
        if not names:
            return
        with self.ledger.writing() as db:
            db.execute(self._link, [{"alias": a, "lead": lead, "at": at, "event_id": event_id}
                                    for a in names])
            db.execute(update(table).where(table.c.lead.in_(names)).values(lead=lead))

    def resolve(self, keys: Iterable[str]) -> dict[str, str]:
        """The lead each key now is, for the keys that are aliases."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        found: dict[str, str] = {}
        with self.ledger.engine.connect() as db:
            rows = db.execute(select(table.c.alias, table.c.lead).where(table.c.alias.in_(wanted))).all()
            found = {alias: lead for alias, lead in rows}
            for _ in range(MAX_HOPS):  # flattened on link; a chain only if written by hand
                further = dict(db.execute(select(table.c.alias, table.c.lead)
                                          .where(table.c.alias.in_(set(found.values())))).all())
                if not further:
                    break
                found = {k: further.get(v, v) for k, v in found.items()}
        return found

    def one(self, key: str) -> str:
        return self.resolve([key]).get(key, key)

    def of(self, lead: str) -> list[str]:
        with self.ledger.engine.connect() as db:
            return list(db.execute(select(table.c.alias).where(table.c.lead == lead)
                                   .order_by(table.c.at)).scalars().all())
