"""Evaluation in child processes: a deadline on every engine call, and a crash costs one event.

durable-rules is C code that holds the GIL: in the worker's own process nothing could stop a call
that never returns (no thread runs, no signal handler either), and a segfault would take every
lead of the worker with it. So the worker hands each batch of a lead's events to one of a few
evaluator processes (`LEADFLOW_EVAL_PROCESSES`, default 2) and waits for each Decision at most
`LEADFLOW_EVAL_DEADLINE_SECONDS` (default 5; an evaluation takes well under a millisecond). When
an evaluator goes past it or dies, it is killed and replaced, that event is rejected with a clear
policy error in the lead's story, and the batch goes on from the lead as the last good Decision
left it. rules/shape.py keeps the engine's known hangs from being reached at all; this is the
guard for what nobody has found yet.

A child loads a policy version once, from its YAML bytes (validated and compiled again there,
and registered with the engine under its own deadline), and evaluates with it until it dies.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing
import multiprocessing.connection
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from activities.evaluation import BatchResult, Catalog, EvaluateBatch, PolicyError
from rules.compile import CompiledPolicy
from rules.engine import EngineError
from rules.models import Decision

log = logging.getLogger("leadflow.evaluator")
DEFAULT_TARGET = "activities.evaluation:evaluate_event"


class ChildDied(Exception):
    pass


def _serve(conn: multiprocessing.connection.Connection, target: str) -> None:
    """An evaluator process: load policies and evaluate batches until the worker goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle
    from rules import engine
    from rules.validate import PolicyInvalid, load_policy_bytes

    module, _, name = target.partition(":")
    evaluate_event = getattr(importlib.import_module(module), name)
    policies: dict[str, CompiledPolicy] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "load":
            _, sha, file, raw = message
            try:
                compiled = load_policy_bytes(raw, file).compiled
                for phase, definition in compiled.definitions.items():
                    engine.register(f"{compiled.ruleset}/{phase}", definition, compiled.constants)
                policies[sha] = compiled
                conn.send(("loaded", None))
            except (PolicyInvalid, EngineError) as err:
                conn.send(("loaded", str(err)))
            continue
        _, active, pinned, batch = message
        catalog = Catalog(policies[active], policies.get(pinned) if pinned else None)
        lead, version = batch.lead, batch.version
        for event in batch.events:
            try:
                decision = evaluate_event(catalog, lead, event, batch.now, version)
            except PolicyError as err:
                conn.send(("error", str(err)))
                continue
            except EngineError as err:
                conn.send(("engine", str(err)))
                break
            conn.send(("decision", decision))
            lead, version = decision.lead, decision.version


@dataclass
class _Child:
    process: Any
    conn: multiprocessing.connection.Connection
    loaded: set[str] = field(default_factory=set)

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class EvaluatorPool:
    def __init__(self, size: int = 2, deadline: float = 5.0, load_deadline: float = 120.0,
                 target: str = DEFAULT_TARGET) -> None:
        self.size = max(1, size)
        self.deadline = deadline
        self.load_deadline = load_deadline
        self.target = target
        self._context = multiprocessing.get_context("spawn")  # the worker has threads: no fork
        self._idle: list[_Child] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._started = 0
        self.restarts = 0

    # -- children ----------------------------------------------------------------------------

    def _spawn(self) -> _Child:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(child, self.target), daemon=True,
                                        name="leadflow-evaluator")
        process.start()
        child.close()
        return _Child(process, parent)

    def start(self) -> None:
        """Start the children now rather than at the first event (each imports for a moment)."""
        while self._started < self.size:
            self._idle.append(self._spawn())
            self._started += 1

    async def _take(self) -> _Child:
        self.start()
        while not self._idle:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        return self._idle.pop()

    def _give(self, child: _Child) -> None:
        self._idle.append(child)
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                break

    def _replace(self, child: _Child) -> _Child:
        child.kill()
        self.restarts += 1
        return self._spawn()

    def close(self) -> None:
        for child in self._idle:
            child.kill()
        self._idle.clear()
        self._started = 0

    # -- talking to one child ----------------------------------------------------------------

    async def _recv(self, child: _Child, timeout: float) -> Any:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        fd = child.conn.fileno()

        def ready() -> None:
            loop.remove_reader(fd)
            if done.done():
                return
            try:
                done.set_result(child.conn.recv())
            except (EOFError, OSError) as err:
                done.set_exception(ChildDied(str(err) or "the evaluator process exited"))

        loop.add_reader(fd, ready)
        try:
            return await asyncio.wait_for(done, timeout)
        finally:
            loop.remove_reader(fd)

    async def _load(self, child: _Child, policy: CompiledPolicy) -> None:
        if policy.sha in child.loaded:
            return
        child.conn.send(("load", policy.sha, policy.file, policy.source))
        _, refusal = await self._recv(child, self.load_deadline)
        if refusal:
            raise PolicyError(f"the evaluator refused policy v{policy.version}: {refusal}")
        child.loaded.add(policy.sha)

    # -- the API -----------------------------------------------------------------------------

    async def evaluate(self, catalog: Catalog, batch: EvaluateBatch) -> BatchResult:
        """Like activities.evaluation.evaluate_batch, in a child, with a deadline per event."""
        child = await self._take()
        try:
            decisions: list[Decision | None] = []
            errors: list[str | None] = []
            lead, version = batch.lead, batch.version
            events = list(batch.events)
            while events:
                try:
                    for policy in filter(None, (catalog.active, catalog.pinned)):
                        await self._load(child, policy)
                except PolicyError as err:
                    decisions.extend([None] * len(events))
                    errors.extend([str(err)] * len(events))
                    break
                except (TimeoutError, ChildDied) as err:
                    child = self._replace(child)
                    why = _why(err, self.load_deadline, "loading the policy")
                    decisions.extend([None] * len(events))
                    errors.extend([why] * len(events))
                    break
                pinned = catalog.pinned.sha if catalog.pinned else None
                child.conn.send(("batch", catalog.active.sha, pinned,
                                 batch.model_copy(update={"lead": lead, "version": version,
                                                          "events": events})))
                while events:
                    started = time.monotonic()
                    try:
                        kind, payload = await self._recv(child, self.deadline)
                    except (TimeoutError, ChildDied) as err:
                        log.error("evaluator %s on event %s after %.1f s; restarting it",
                                  "timed out" if isinstance(err, TimeoutError) else "died",
                                  events[0].id, time.monotonic() - started)
                        child = self._replace(child)
                        decisions.append(None)
                        errors.append(_why(err, self.deadline, f"{events[0].type} event {events[0].id}"))
                        events.pop(0)
                        break  # start the rest again in the new child
                    events.pop(0)
                    if kind == "engine":
                        raise EngineError(payload)  # retry the batch: nothing applied yet
                    if kind == "error":
                        decisions.append(None)
                        errors.append(payload)
                        continue
                    decisions.append(payload)
                    errors.append(None)
                    lead, version = payload.lead, payload.version
            return BatchResult(decisions=decisions, errors=errors)
        finally:
            self._give(child)


def _why(err: Exception, seconds: float, what: str) -> str:
    if isinstance(err, TimeoutError):
        return (f"the rules engine did not finish {what} within {seconds:g} s "
                "(LEADFLOW_EVAL_DEADLINE_SECONDS); the evaluator was restarted")
    return f"the rules engine crashed on {what} ({err}); the evaluator was restarted"

