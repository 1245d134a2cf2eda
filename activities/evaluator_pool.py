"""Evaluation in child processes: a deadline on every engine call, and a crash costs one event.

durable-rules is C code that holds the GIL: in the worker's own process nothing could stop a call
that never returns (no thread runs, no signal handler either), and a segfault would take every
lead of the worker with it. So the worker hands each batch of a lead's events to one of a few
evaluator processes (`LEADFLOW_EVAL_PROCESSES`, default 2) and waits for each Decision at most
`LEADFLOW_EVAL_DEADLINE_SECONDS` (default 5; an evaluation takes well under a millisecond). When
an evaluator goes past it or dies, it is killed and replaced, that event is rejected with a clear
policy error in the lead's story, and the batch goes on from the lead as the last good Decision
left it. rules/index_plan.py keeps the engine's known hangs from being reached at all; this is the
guard for what nobody has found yet.

A child loads a policy version once, from its YAML bytes (validated and compiled again there,
and registered with the engine under its own deadline), and evaluates with it until it dies. A
policy the child refuses rejects the batch's events (a policy error); a load that runs out of time
or dies is no event's fault: EngineError, and the lead tries the batch again later.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing
import multiprocessing.connection
import signal
from dataclasses import dataclass, field
from typing import Any, cast

from activities.evaluation import BatchResult, Catalog, EvaluateBatch, PolicyError, evaluate_batch
from rules import engine
from rules.compile import CompiledPolicy
from rules.engine import EngineError
from rules.evaluate import remember
from rules.models import Decision

log = logging.getLogger("leadflow.evaluator")
_TIMEOUTS = (TimeoutError, asyncio.TimeoutError)  # one class from Python 3.11 on, two before
DEFAULT_TARGET = "activities.evaluation:evaluate_event"


class ChildDied(Exception):
    pass


def _serve(conn: multiprocessing.connection.Connection, progress: Any, target: str) -> None:
    """An evaluator process: load policies and evaluate batches until the worker goes away.
    A batch's Decisions go back in one message (a round trip between processes costs more than
    an evaluation); `progress` counts the events done, so the worker can tell which one hangs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle
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
        _, active, pinned, rollout, batch = message
        catalog = Catalog(policies[active], policies.get(pinned) if pinned else None, rollout)
        lead, version = batch.lead, batch.version
        results: list[tuple[str, Any]] = []
        with engine.learning() as learned:
            for event in batch.events:
                try:
                    decision = evaluate_event(catalog, lead, event, batch.now, version)
                except PolicyError as err:
                    results.append(("error", str(err)))
                except EngineError as err:
                    results.append(("engine", str(err)))
                    break
                else:
                    results.append(("decision", decision))
                    lead, version = decision.lead, decision.version
                progress.value += 1
        # what the engine answered goes back too: the worker remembers it, and evaluates the
        # next facts like these itself (see EvaluatorPool.evaluate)
        conn.send(("results", results, learned))


class Stopped(Exception):
    """The evaluator hung or died on the batch's event at `index`."""

    def __init__(self, index: int, cause: Exception) -> None:
        super().__init__(str(cause))
        self.index = index
        self.cause = cause


@dataclass
class _Child:
    process: Any
    conn: multiprocessing.connection.Connection
    progress: Any  # shared: events of the current batch done
    loaded: set[str] = field(default_factory=set)
    busy: bool = False  # a reply is owed: if nobody reads it, the child is replaced, not reused

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class EvaluatorPool:
    # load_deadline stays below the evaluation activity's 60 s, so the pool, not a cancelled
    # activity, is the one to give up on a policy that does not load
    def __init__(self, size: int = 2, deadline: float = 5.0, load_deadline: float = 45.0,
                 target: str = DEFAULT_TARGET) -> None:
        self.size = max(1, size)
        self.deadline = deadline
        self.load_deadline = load_deadline
        self.target = target
        self._context = multiprocessing.get_context("spawn")  # the worker has threads: no fork
        self._idle: list[_Child] = []
        self._all: list[_Child] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._started = 0
        self.restarts = 0

    # -- children ----------------------------------------------------------------------------

    def _spawn(self) -> _Child:
        parent, child = self._context.Pipe()
        progress = self._context.RawValue("i", 0)
        process = self._context.Process(target=_serve, args=(child, progress, self.target), daemon=True,
                                        name="leadflow-evaluator")
        process.start()
        child.close()
        spawned = _Child(process, parent, progress)
        self._all.append(spawned)
        return spawned

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
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: the child it was woken for is free
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
        return self._idle.pop()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def _give(self, child: _Child) -> None:
        self._idle.append(child)
        self._wake()

    def _replace(self, child: _Child) -> _Child:
        child.kill()
        if child in self._all:
            self._all.remove(child)
        self.restarts += 1
        return self._spawn()

    def close(self) -> None:
        """Stop every child, busy ones too (one may be stuck in the engine)."""
        for child in self._all:
            child.kill()
        self._all.clear()
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
            reply = await asyncio.wait_for(done, timeout)
        finally:
            loop.remove_reader(fd)
        child.busy = False
        return reply

    def _send(self, child: _Child, message: Any) -> None:
        child.busy = True
        try:
            child.conn.send(message)
        except OSError as err:  # the pipe broke: the child is gone
            raise ChildDied(str(err)) from err

    async def _load(self, child: _Child, policy: CompiledPolicy) -> None:
        if policy.sha in child.loaded:
            return
        self._send(child, ("load", policy.sha, policy.file, policy.source))
        _, refusal = await self._recv(child, self.load_deadline)
        if refusal:
            raise PolicyError(f"the evaluator refused policy v{policy.version}: {refusal}")
        child.loaded.add(policy.sha)

    # -- the API -----------------------------------------------------------------------------

    async def _results(self, child: _Child, size: int) -> tuple[list[tuple[str, Any]], list[Any]]:
        """The batch's results and the engine answers the child learned, while the child keeps
        finishing an event every `deadline`."""
        done = 0
        while True:
            try:
                _, results, learned = await self._recv(child, self.deadline)
                return cast(list[tuple[str, Any]], results), cast(list[Any], learned)
            except _TIMEOUTS as err:
                now = child.progress.value
                if now == done:
                    raise Stopped(min(now, size - 1), err) from err
                done = now
            except ChildDied as err:
                if child.progress.value >= size:  # it died after the work, sending it: no one to blame
                    raise
                raise Stopped(child.progress.value, err) from err

    async def evaluate(self, catalog: Catalog, batch: EvaluateBatch) -> BatchResult:
        """Like activities.evaluation.evaluate_batch, in a child, with a deadline per event. An
        event that hangs or kills its evaluator is rejected; the batch is evaluated again without
        it in a new evaluator (evaluation is deterministic), so later events meet the lead as the
        events before left it."""
        child = await self._take()
        if not child.process.is_alive():  # it died while idle (killed from outside, say)
            log.warning("an idle evaluator had exited (code %s); replacing it", child.process.exitcode)
            child = self._replace(child)
        pending = list(enumerate(batch.events))
        outcome: dict[int, tuple[Decision | None, str | None]] = {}
        tries = 0
        try:
            while pending:
                tries += 1
                if tries > len(batch.events) + 3:
                    raise EngineError("evaluator processes keep exiting on this batch")
                try:
                    for policy in filter(None, (catalog.active, catalog.pinned)):
                        await self._load(child, policy)
                except PolicyError as err:
                    outcome.update((i, (None, str(err))) for i, _ in pending)
                    break
                except (*_TIMEOUTS, ChildDied) as err:
                    # no event's fault (the machine overloaded, the process killed): the lead
                    # tries the batch again later, rather than reject every event of it
                    child = self._replace(child)
                    raise EngineError(_why(err, self.load_deadline, "loading the policy")) from err
                pinned = catalog.pinned.sha if catalog.pinned else None
                child.progress.value = 0
                try:
                    self._send(child, ("batch", catalog.active.sha, pinned, catalog.rollout,
                                       batch.model_copy(update={"events": [e for _, e in pending]})))
                    results, learned = await self._results(child, len(pending))
                    _learn(catalog, learned)
                except ChildDied:  # before the batch started, or after it ended: a new child
                    child = self._replace(child)
                    continue
                except Stopped as stop:
                    index, event = pending.pop(stop.index)
                    log.error("evaluator %s on event %s; restarting it",
                              "timed out" if isinstance(stop.cause, _TIMEOUTS) else "died", event.id,
                              extra={"event_id": event.id})
                    child = self._replace(child)
                    outcome[index] = (None, _why(stop.cause, self.deadline, f"{event.type} event {event.id}"))
                    continue
                if len(results) < len(pending) and not any(kind == "engine" for kind, _ in results):
                    raise EngineError(f"an evaluator answered {len(results)} of {len(pending)} events")
                for (index, _), (kind, payload) in zip(pending, results, strict=False):
                    if kind == "engine":
                        raise EngineError(payload)  # retry the batch: nothing applied yet
                    outcome[index] = (payload, None) if kind == "decision" else (None, payload)
                break
            ordered = [outcome[i] for i in range(len(batch.events))]
            return BatchResult(decisions=[d for d, _ in ordered], errors=[e for _, e in ordered])
        finally:
            if child.busy:  # left mid-exchange (cancelled, say): its reply would meet another batch
                child = self._replace(child)
            self._give(child)


def _learn(catalog: Catalog, learned: list[Any]) -> None:
    """Remember in this process what a child's engine answered, under the policy version it
    answered for."""
    versions = {p.sha: p for p in (catalog.active, catalog.pinned) if p is not None}
    for sha, phase, key, names in learned:
        policy = versions.get(sha)
        if policy is not None:
            remember(policy, phase, key, names)


def evaluate_remembered(catalog: Catalog, batch: EvaluateBatch) -> BatchResult | None:
    """The batch evaluated in this process if the answers its policy remembers are all it needs
    (no engine call, so nothing here can hang or crash in C); None when the engine would have to
    be asked, or anything else went wrong: then a child evaluates it, as it always did."""
    try:
        with engine.remembered_only():
            return evaluate_batch(catalog, batch)
    except Exception:  # Unremembered, or a failure a child handles and reports as it always has
        return None


def _why(err: Exception, seconds: float, what: str) -> str:
    if isinstance(err, _TIMEOUTS):
        return (f"the rules engine did not finish {what} within {seconds:g} s "
                "(LEADFLOW_EVAL_DEADLINE_SECONDS); the evaluator was restarted")
    return f"the rules engine crashed on {what} ({err}); the evaluator was restarted"

