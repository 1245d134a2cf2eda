"""A real PostgreSQL server for the tests, started from the `pgserver` package (the server's
binaries ship in its wheel), once per test session; each user gets a database of its own."""

from __future__ import annotations

import atexit
import os
import tempfile
import threading
import uuid
from typing import Any

_server: Any = None
_lock = threading.Lock()


def server() -> Any:
    global _server
    with _lock:
        if _server is None:
            import pgserver

            folder = tempfile.mkdtemp(prefix="leadflow-pg-")
            os.environ.setdefault("XDG_RUNTIME_DIR", folder)  # pgserver's platformdirs asks for one
            _server = pgserver.get_server(folder, cleanup_mode="stop")
            atexit.register(_server.cleanup)
        return _server


def new_database() -> str:
    """A fresh, empty database; its SQLAlchemy URL."""
    srv = server()
    name = f"t_{uuid.uuid4().hex[:12]}"
    srv.psql(f"CREATE DATABASE {name};")
    base = srv.get_uri()  # postgresql://postgres:@/postgres?host=/tmp/...
    head, _, query = base.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}?{query}"
