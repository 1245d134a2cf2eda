"""The only module that touches durable-rules. It keeps the engine from taking a worker down.

We drive the C engine directly instead of through `durable.lang`/`Host`: the Host starts a
background dispatcher thread (one of the measured segfaults) and runs Python actions inside the
engine, where their exceptions are swallowed into session state. Here the engine only matches:
we assert one snapshot fact, read back the names of the rules that matched (in `pri` order) and
act on them in Python. One lock serialises all engine calls (they hold the GIL anyway and a
session is unsafe under concurrency); every evaluation gets a fresh session id that is deleted
before the lock is released, so at most one session is ever live.

A third crash, found here (beyond shared/DURABLE_RULES.md): the engine's `createStateNode`
leaves a session's action context (`context.messages`, `context.stateFact`) uninitialised;
only starting an action sets it. Deleting a session in which no rule ever matched frees heap
garbage (`free(): invalid pointer`, abort), once the allocator has reused memory. So every
ruleset gets a sentinel rule that matches every snapshot and sorts last: each session starts
(and completes) at least one action, which leaves the context pointers valid (NULL) for
`delete_state`. A session that somehow never started one is leaked rather than deleted.
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

import durable_rules_engine as _engine

_lock = threading.Lock()
_handles: dict[str, int] = {}
_sids = itertools.count(1)
_live: set[str] = set()
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
SENTINEL = "z"
_leaked: list[str] = []


class EngineError(RuntimeError):
    """The engine refused or failed a call; the evaluation is abandoned, the session deleted."""


def register(ruleset: str, definition: dict[str, Any]) -> int:
    """Register a ruleset once per process; the name carries the content hash, so reuse is safe."""
    with _lock:
        handle = _handles.get(ruleset)
        if handle is None:
            last = max((r.get("pri", 0) for r in definition.values()), default=0)
            sentinel = {"all": [{"m": {"$ex": {"k": 1}}}], "pri": last + 1}
            full = {**definition, SENTINEL: sentinel}
            try:
                handle = _engine.create_ruleset(ruleset, _dumps(full))
            except Exception as err:  # the C module raises bare Exceptions
                raise EngineError(f"durable-rules refused ruleset {ruleset}: {err}") from err
            _handles[ruleset] = handle
        return handle


def live_sessions() -> int:
    return len(_live)


def leaked_sessions() -> int:
    """Sessions kept rather than deleted because deleting them could crash (should stay 0)."""
    return len(_leaked)


class Session:
    """One evaluation's engine session: `with Session(handle) as s: s.match(fact)`."""

    def __init__(self, handle: int) -> None:
        self._handle = handle
        self._facts = 0
        self._started = False
        self.sid = ""

    def __enter__(self) -> Session:
        _lock.acquire()
        self.sid = f"s{next(_sids)}"
        _live.add(self.sid)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._facts and not self._started:
                _leaked.append(self.sid)
            elif self._facts:
                _engine.delete_state(self._handle, self.sid)
        except Exception:  # nothing to delete, or the engine refused: the session is gone
            pass
        finally:
            _live.discard(self.sid)
            _lock.release()

    def match(self, fact: dict[str, Any]) -> list[str]:
        """Assert `fact` and return the engine names of every rule it matched, in `pri` order."""
        self._facts += 1
        fact["sid"] = self.sid
        fact["id"] = self._facts
        try:
            code, state = _engine.assert_fact(self._handle, _dumps(fact))
        except Exception as err:
            raise EngineError(f"durable-rules failed to assert a fact: {err}") from err
        if code == 1:  # nothing matched
            return []
        if code != 0:
            raise EngineError(f"durable-rules answered code {code} to an assert")
        names: list[str] = []
        try:
            result = _engine.start_action_for_state(self._handle, state)
            self._started = True
            while result:
                payload = result[1] if isinstance(result, tuple) else result
                # payload is '{"<rule name>":{...}}'; rule names are ours ([a-z][0-9]*)
                name = payload[2 : payload.index('"', 2)]
                if name != SENTINEL:
                    names.append(name)
                result = _engine.complete_and_start_action(self._handle, state)
        except Exception as err:
            raise EngineError(f"durable-rules failed while matching: {err}") from err
        return names


def session_exists(handle: int, sid: str) -> bool:
    """Whether the engine still holds state for `sid` (tests use it to prove deletion)."""
    with _lock:
        try:
            _engine.get_state(handle, sid)
        except Exception:
            return False
        return True
