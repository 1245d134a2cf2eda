"""The record of erasures: when, by whom, and a pseudonym of the lead, so an erasure can be
shown to have happened (and a later question about the same person answered) without keeping
who it was. The pseudonym is keyed (HMAC with a key of LEADFLOW_SECRET's): a lead id is a plain
hash of the address, which anyone with a list of addresses can compute."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from sqlalchemy import select

from leadflow.db.database import Database
from leadflow.db.schema import erasures as table

KEY_USE = "person-pseudonym"


def pseudonym(key: str, lead: str) -> str:
    """The same for the same lead id and key; says nothing of the lead without the key."""
    return hmac.new(key.encode(), lead.encode(), hashlib.sha256).hexdigest()[:32]


def record(ledger: Database, by: str, pseudonym_: str, counts: dict[str, int],
           now: float | None = None) -> dict[str, Any]:
    at = time.time() if now is None else now
    with ledger.writing() as db:
        db.execute(table.insert().values(at=at, by=by[:320], pseudonym=pseudonym_,
                                         counts=json.dumps(counts, sort_keys=True)))
    return {"at": at, "by": by[:320], "pseudonym": pseudonym_, "counts": counts}


def of(ledger: Database, pseudonym_: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Erasures, newest first (of one pseudonym, when given)."""
    c = table.c
    query = select(c.at, c.by, c.pseudonym, c.counts).order_by(c.id.desc()).limit(limit)
    if pseudonym_ is not None:
        query = query.where(c.pseudonym == pseudonym_)
    with ledger.engine.connect() as db:
        return [{"at": row.at, "by": row.by, "pseudonym": row.pseudonym, "counts": json.loads(row.counts)}
                for row in db.execute(query)]
