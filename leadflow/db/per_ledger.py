"""One reader or writer of a kind per open database: its statements are made once, and every
thread of the process shares it (each call opens its own connection)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from leadflow.db.database import Database

T = TypeVar("T")
_OPEN: dict[tuple[Callable[..., object], int], tuple[Database, object]] = {}
_LOCK = threading.Lock()


def per_ledger(kind: Callable[[Database], T], ledger: Database) -> T:
    with _LOCK:
        found = _OPEN.get((kind, id(ledger)))
        if found is None or found[0] is not ledger:  # an id a closed database had: made anew
            found = _OPEN[(kind, id(ledger))] = (ledger, kind(ledger))
        return found[1]  # type: ignore[return-value]
