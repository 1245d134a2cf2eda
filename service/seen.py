"""Which event ids the doors have already passed to a lead, so a re-sent batch can say
`duplicate` for each of them. The lead's own idempotency (the ids it has seen) is what keeps
a repeat from changing anything; this only lets the door tell the sender.

SQLite under LEADFLOW_HOME (`intake.sqlite`), shared by the API, the pages and the CLI of one
machine; an id is recorded after its lead took it, so a failed send can be sent again."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path


class SeenEvents:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        # an id names an event of one lead, as the lead's own idempotency reads it
        self._db.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT NOT NULL, lead TEXT NOT NULL, "
                         "at REAL NOT NULL, PRIMARY KEY (id, lead)) WITHOUT ROWID")
        self._lock = threading.Lock()

    def known(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (lead, event id) pairs have been passed on before."""
        wanted = set(keys)
        ids = list({event_id for _, event_id in wanted})
        found: set[tuple[str, str]] = set()
        with self._lock:
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                rows = self._db.execute(
                    f"SELECT lead, id FROM seen WHERE id IN ({','.join('?' * len(part))})", part)
                found.update(pair for pair in ((r[0], r[1]) for r in rows) if pair in wanted)
        return found

    def add(self, taken: Iterable[tuple[str, str]]) -> None:
        now = time.time()
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO seen (lead, id, at) VALUES (?, ?, ?)",
                                 [(lead, event_id, now) for lead, event_id in taken])

    def close(self) -> None:
        with self._lock:
            self._db.close()
