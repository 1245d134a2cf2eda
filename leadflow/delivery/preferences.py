"""The preference centre's memory: the topics of marketing e-mail (guides, events: a template's
`topic:`) each person dropped, by the address's keyed hash as the suppression list keeps it
(Database.pseudonym). The
unsubscribe link's page writes it; every e-mail of a dropped topic is held back at sending, as
an address on the suppression list is, and the lead's story says so."""

from __future__ import annotations

import time

from sqlalchemy import delete, select

from leadflow.db.database import Database, address_hash
from leadflow.db.per_ledger import per_ledger
from leadflow.db.schema import topic_choices


class Preferences:
    def __init__(self, ledger: Database) -> None:
        self.ledger = ledger
        self._add = ledger.insert(topic_choices).on_conflict_do_nothing(
            index_elements=["address_hash", "topic"])

    def dropped(self, digest: str) -> frozenset[str]:
        """The topics the address (by its hash) dropped."""
        with self.ledger.engine.connect() as db:
            rows = db.execute(select(topic_choices.c.topic).where(
                topic_choices.c.address_hash.in_(self.ledger.pseudonyms(digest))))
            return frozenset(row.topic for row in rows)

    def drops(self, address: str, topic: str) -> bool:
        return topic in self.dropped(address_hash(address))

    def choose(self, digest: str, dropped: set[str], now: float | None = None) -> None:
        """The address drops exactly these topics from now on (the others it keeps)."""
        t = topic_choices.c
        keyed = self.ledger.pseudonym(digest)
        with self.ledger.writing() as db:
            # what an earlier key kept goes too: the choice is written anew under the current one
            db.execute(delete(topic_choices).where(t.address_hash.in_(self.ledger.pseudonyms(digest)),
                                                   t.address_hash != keyed))
            db.execute(delete(topic_choices).where(t.address_hash == keyed, t.topic.not_in(sorted(dropped))))
            if dropped:
                at = time.time() if now is None else now
                db.execute(self._add, [{"address_hash": keyed, "topic": topic, "at": at}
                                       for topic in sorted(dropped)])


def preferences_of(ledger: Database) -> Preferences:
    return per_ledger(Preferences, ledger)
