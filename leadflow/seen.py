"""Which event ids the doors have already passed to a lead, so a re-sent batch can say
`duplicate` for each of them. The lead's own idempotency (the ids it has seen) is what keeps
a repeat from changing anything; this only lets the door tell the sender.

SQLite under LEADFLOW_HOME (`intake.sqlite`), shared by the API, the pages and the CLI of one
machine; an id is recorded after its lead took it, so a failed send can be sent again.

The memory is about one Temporal server's leads: each id is kept under a scope (`scope_of`: the
Temporal address and namespace, the shared database and, for the embedded dev server, which
database that server has), so a new dev server, another cluster or another namespace starts with
nothing passed on. And an id is a duplicate only while its lead is there to have taken it
(`held`): a lead the server does not know took nothing."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from leadflow.temporal import described

if TYPE_CHECKING:
    from temporalio.client import Client

    from leadflow.settings import Settings

FILE_NAME = "intake.sqlite"
DESCRIBE_AT_ONCE = 50  # leads asked about at once by `held`


def dev_server_identity(database: Path) -> str:
    """Which database the embedded dev server keeps its state in: the id of its `default`
    namespace, made when that database was (a new file, a new id). Read-only, and a server may
    be writing: anything unreadable falls back to the file's inode (or `none`: no file yet)."""
    try:
        db = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=2)
        try:
            row = db.execute("SELECT hex(id) FROM namespaces WHERE name = 'default'").fetchone()
        finally:
            db.close()
        if row and row[0]:
            return f"namespace-id {row[0]}"
    except sqlite3.Error:
        pass
    try:
        stat = database.stat()
    except OSError:
        return "none"
    return f"inode {stat.st_dev}:{stat.st_ino}"


def scope_of(settings: Settings) -> str:
    """The scope the door's memory is kept under: the Temporal address and namespace the leads
    live on, the shared database, and for the embedded dev server which database it has. A
    hash: a database URL may carry a password."""
    if settings.embedded:
        temporal = (f"embedded 127.0.0.1:{settings.dev_port} default "
                    f"{dev_server_identity(settings.home / 'temporal.db')}")
    else:
        temporal = f"{settings.connect.get('target_host')} {settings.namespace}"
    return hashlib.sha256(f"{temporal}\n{settings.shared_db_url}".encode()).hexdigest()[:32]


class SeenEvents:
    def __init__(self, path: Path, scope: str = "") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.scope = scope
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        # an id names an event of one lead, as the lead's own idempotency reads it, on the
        # Temporal server (and database) of its scope
        self._db.execute("CREATE TABLE IF NOT EXISTS seen_in (scope TEXT NOT NULL, id TEXT NOT NULL, "
                         "lead TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (scope, id, lead)) WITHOUT ROWID")
        # the memory of before scopes said nothing of which server it was about: not to be trusted
        self._db.execute("DROP TABLE IF EXISTS seen")
        self._lock = threading.Lock()

    @classmethod
    def of(cls, settings: Settings) -> SeenEvents:
        """The machine's memory (under LEADFLOW_HOME), scoped to the server the settings name."""
        return cls(settings.home / FILE_NAME, scope_of(settings))

    def known(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (lead, event id) pairs have been passed on before, in this scope."""
        wanted = set(keys)
        ids = list({event_id for _, event_id in wanted})
        found: set[tuple[str, str]] = set()
        with self._lock:
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                rows = self._db.execute(
                    f"SELECT lead, id FROM seen_in WHERE scope = ? AND id IN ({','.join('?' * len(part))})",
                    [self.scope, *part])
                found.update(pair for pair in ((r[0], r[1]) for r in rows) if pair in wanted)
        return found

    def add(self, taken: Iterable[tuple[str, str]]) -> None:
        now = time.time()
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO seen_in (scope, lead, id, at) VALUES (?, ?, ?, ?)",
                                 [(self.scope, lead, event_id, now) for lead, event_id in taken])

    def forget(self, pairs: Iterable[tuple[str, str]]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM seen_in WHERE scope = ? AND lead = ? AND id = ?",
                                 [(self.scope, lead, event_id) for lead, event_id in pairs])

    async def held(self, client: Client, known: set[tuple[str, str]],
                   merged: Mapping[str, str] | None = None) -> set[tuple[str, str]]:
        """Of the pairs `known` says were passed on, those whose lead is there to have taken
        them (its workflow, or the one it was merged into, exists on the server); the others are
        forgotten. One describe per lead, and only for leads with a pair to check."""
        merged = merged or {}
        leads = sorted({lead for lead, _ in known})
        gate = asyncio.Semaphore(DESCRIBE_AT_ONCE)

        async def exists(lead: str) -> bool:
            async with gate:
                return await described(client, merged.get(lead, lead)) is not None

        there = dict(zip(leads, await asyncio.gather(*(exists(lead) for lead in leads)), strict=True))
        gone = {pair for pair in known if not there[pair[0]]}
        if gone:
            await asyncio.to_thread(self.forget, gone)
        return known - gone

    def close(self) -> None:
        with self._lock:
            self._db.close()
