"""The only module that calls durable-rules. It keeps the engine from taking a worker down.

We drive the C engine directly instead of through `durable.lang`/`Host`: the Host starts a
background dispatcher thread (one of the measured segfaults) and runs Python actions inside the
engine, where their exceptions are swallowed into session state. Here the engine only matches:
we assert one fact, read back the names of the rules that matched (in `pri` order) and act on
them in Python. One lock serialises all engine calls (they hold the GIL anyway, and a session is
unsafe under concurrency).

One long-lived session per ruleset, each fact retracted after it is matched. The engine sets up
a session with a frame table per rule (about 0.8 us and 14 KB per rule, measured): a fresh
session per evaluation made every rule of a policy cost time on every event, matched or not.
Rules are single patterns over one fact, so a fact never meets another and retracting it leaves
the session empty; memory stays flat over millions of facts (tests/unit/test_engine_safety.py).
Sessions are never deleted, which also avoids both delete_state crashes (a partial join, and a
session whose action context was never set). A session that failed mid-call may hold half a fact;
it is abandoned for a fresh one, so nothing of it can reach the next lead.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections.abc import Collection, Iterator
from contextvars import ContextVar
from typing import Any

import durable_rules_engine as _engine

from rules.engine_json import dumps, fact_json

_lock = threading.Lock()
_rulesets: dict[str, _Ruleset] = {}
_by_handle: dict[int, _Ruleset] = {}
_ids = itertools.count(1)
MEMO = 4096  # fact bodies remembered per ruleset


class EngineError(RuntimeError):
    """The engine refused or failed a call; the fact is abandoned with its session."""


class Unremembered(EngineError):
    """Only remembered answers may be used here (`remembered_only`), and this one is not."""


# Per call chain (a context variable, so threads and tasks do not see each other's): whether the
# engine may be asked at all, and where answers it gave are noted for another process to learn.
_remembered_only: ContextVar[bool] = ContextVar("remembered_only", default=False)
_learning: ContextVar[list[Any] | None] = ContextVar("learning", default=None)


@contextlib.contextmanager
def remembered_only() -> Iterator[None]:
    """Within: an evaluation uses the answers its policy remembers and raises Unremembered where
    the engine would have to be asked. The lead worker evaluates so in its own process, where
    nothing could stop an engine call that hangs (activities.evaluator_pool)."""
    token = _remembered_only.set(True)
    try:
        yield
    finally:
        _remembered_only.reset(token)


@contextlib.contextmanager
def learning() -> Iterator[list[Any]]:
    """Within: every answer the engine gives an evaluation is noted in the list yielded
    (rules.evaluate notes what it remembers it under), for the worker to remember too."""
    noted: list[Any] = []
    token = _learning.set(noted)
    try:
        yield noted
    finally:
        _learning.reset(token)


def may_ask() -> None:
    """Raise Unremembered where the engine may not be asked."""
    if _remembered_only.get():
        raise Unremembered("the engine would have to be asked")


def note(entry: Any) -> None:
    """Note an answer the engine gave, where answers are being learned."""
    noted = _learning.get()
    if noted is not None:
        noted.append(entry)


class _Ruleset:
    def __init__(self, name: str, handle: int) -> None:
        self.name = name
        self.handle = handle
        self.generation = 0
        self.sid = "live-0"
        self.abandoned = 0
        # what a fact body matched: the same body always matches the same rules (a ruleset's
        # name carries its content hash), and engagement facts repeat all the time (an e-mail
        # open is an e-mail open), so the engine is asked once per body
        self.memo: dict[str, tuple[str, ...]] = {}

    def abandon(self) -> None:
        self.generation += 1
        self.abandoned += 1
        self.sid = f"live-{self.generation}"


def register(ruleset: str, definition: dict[str, Any], constants: Collection[float] = ()) -> int:
    """Register a ruleset once per process; the name carries the content hash, so reuse is safe."""
    known = _rulesets.get(ruleset)
    if known is not None:
        return known.handle
    with _lock:
        known = _rulesets.get(ruleset)
        if known is None:
            try:
                handle = _engine.create_ruleset(ruleset, dumps(definition, constants))
            except Exception as err:  # the C module raises bare Exceptions
                raise EngineError(f"durable-rules refused ruleset {ruleset}: {err}") from err
            known = _rulesets[ruleset] = _by_handle[handle] = _Ruleset(ruleset, handle)
        return known.handle


def encode(fact: dict[str, Any], constants: Collection[float] = ()) -> str:
    """A flat fact as the engine reads it (see rules.engine_json); `match` adds sid and id."""
    return fact_json(fact, constants)


def match(handle: int, body: str) -> list[str]:
    """Assert a fact (`encode`d, not empty), return the engine names of the rules it matched
    (each once, in `pri` order), and retract it."""
    with _lock:
        rs = _by_handle[handle]
        known = rs.memo.get(body)
        if known is not None:
            return list(known)
        names = _assert(rs, handle, body)
        if len(rs.memo) >= MEMO:  # bounded: a worker meets ever new stage facts for months
            rs.memo.clear()
        rs.memo[body] = tuple(names)
        return names


def _assert(rs: _Ruleset, handle: int, body: str) -> list[str]:
    """The engine's own answer for one fact (the caller holds the lock)."""
    text = f'{{"sid":"{rs.sid}","id":{next(_ids)},{body[1:]}'
    try:
        code, state = _engine.assert_fact(handle, text)
    except Exception as err:
        rs.abandon()
        raise EngineError(f"durable-rules failed to assert a fact: {err}") from err
    if code == 1:  # matched nothing, so nothing was stored
        return []
    names: list[str] = []
    try:
        if code != 0:
            raise EngineError(f"durable-rules answered code {code} to an assert")
        result = _engine.start_action_for_state(handle, state)
        while result:
            payload = result[1] if isinstance(result, tuple) else result
            # payload is '{"<rule name>":{...}}'; rule names are ours ([a-z][0-9]*)
            name = payload[2 : payload.index('"', 2)]
            # a rule whose `any` holds two ways is reached twice; it matched once
            if name not in names:
                names.append(name)
            result = _engine.complete_and_start_action(handle, state)
        _engine.retract_fact(handle, text)
    except EngineError:
        rs.abandon()
        raise
    except Exception as err:
        rs.abandon()
        raise EngineError(f"durable-rules failed while matching: {err}") from err
    return names


def abandoned_sessions() -> int:
    """Sessions given up after an engine failure (each may hold one fact; should stay 0)."""
    return sum(r.abandoned for r in _rulesets.values())



def held_facts(ruleset: str) -> list[Any]:
    """The facts the live session of a ruleset holds (none between calls; tests check it)."""
    with _lock:
        rs = _rulesets.get(ruleset)
        if rs is None:
            return []
        try:
            facts: list[Any] = json.loads(_engine.get_facts(rs.handle, rs.sid))
            return facts
        except Exception:  # the session was never created: nothing ever matched
            return []
