"""The local outbox: what leadflow would send or tell (nurture content, hand-off notices,
escalations), in SQLite under .leadflow/, readable by `leadflow outbox`. SMTP and CRM
delivery will read from here later. A message's key makes delivery idempotent: Temporal may
retry an activity, the outbox keeps the first."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY,
    lead TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL
)"""


class Outbox:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def put(self, key: str, lead: str, kind: str, payload: dict[str, Any]) -> bool:
        """Store a message once; False when the key was already there."""
        with self._connect() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO outbox (key, lead, kind, payload, created) VALUES (?, ?, ?, ?, ?)",
                (key, lead, kind, json.dumps(payload, sort_keys=True), time.time()))
            return cur.rowcount == 1

    def list(self, lead: str | None = None, kind: str | None = None, limit: int = 1000
             ) -> list[dict[str, Any]]:
        query = "SELECT key, lead, kind, payload, created FROM outbox"
        where, args = [], []
        if lead:
            where.append("lead = ?")
            args.append(lead)
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY created, key LIMIT ?"
        with self._connect() as db:
            rows = db.execute(query, (*args, limit)).fetchall()
        return [{"key": k, "lead": lead_id, "kind": kd, "payload": json.loads(p), "created": c}
                for k, lead_id, kd, p, c in rows]
