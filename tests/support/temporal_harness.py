"""A real Temporal time-skipping test server plus a leadflow worker, for workflow tests."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities.delivery import Delivery
from activities.evaluator_pool import EvaluatorPool
from activities.policies import PolicyStore
from leadflow.db.database import Database
from leadflow.governance.registry import Registry
from leadflow.settings import Settings
from leadflow.temporal import binary
from rules.identity import lead_key
from rules.models import LeadRef
from tests.support import ROOT
from worker import build_worker, delivery_for
from workflows.lead import EVENT_SIGNAL, LeadWorkflow
from workflows.types import LeadOptions, LeadView

HISTORIES = ROOT / "tests" / "workflows" / "histories"
HOT = {"role": "vp", "budget": 60000, "timeline": "now", "company_size": 300}  # qualifies at once


def free_port() -> int:
    """A port for a dev server of one's own (tests run beside `make up` and each other)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def dev_server(bare: bool = False, database: Path | None = None) -> tuple[WorkflowEnvironment, int]:
    """A real Temporal dev server (the `temporal` CLI from PyPI) on a free port, in memory, with
    leadflow's search attributes: for tests that need visibility or several processes. Its
    port, for processes run beside it. A port taken by someone else between choosing it and the
    server binding it (tests and their servers pick ports all the time) is tried again anew.
    `bare`: without the search attributes, as a server someone started by hand. `database`: a
    SQLite file instead of memory (what the server keeps can be read after it stops)."""
    from workflows import search

    for attempt in range(3):
        port = free_port()
        try:
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=binary("temporal"), port=port, ui=False,
                search_attributes=() if bare else search.ALL, data_converter=pydantic_data_converter,
                dev_server_database_filename=str(database) if database else None)
        except RuntimeError as err:
            if "Failed starting Temporal dev server" not in str(err) or attempt == 2:
                raise
            continue
        return env, port
    raise AssertionError("unreachable")


@dataclasses.dataclass(frozen=True)
class Space:
    """A namespace of one's own on the session's shared dev server, and a task queue: one test
    module's (or one stack's) leads, tasks and search attributes, apart from every other's."""

    port: int
    namespace: str
    task_queue: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def client(self, data_converter: DataConverter = pydantic_data_converter, **options: Any) -> Client:
        return await Client.connect(self.address, namespace=self.namespace, data_converter=data_converter,
                                    **options)

    def environ(self) -> dict[str, str]:
        """What a CLI or worker process run beside it needs to reach the space."""
        return {"TEMPORAL_ADDRESS": self.address, "TEMPORAL_NAMESPACE": self.namespace,
                "LEADFLOW_TASK_QUEUE": self.task_queue}


class LoopThread:
    """An event loop running in a thread of its own, so coroutines may be run on it from any
    thread, with or without a running loop of their own (a sync test, hypothesis's examples)."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()


class SharedDevServer:
    """One dev server (dev_server(): in memory, leadflow's search attributes) for the whole test
    session, for the tests that need no server of their own (one with its own database, a bare
    one, one to kill). Each user takes a Space on it (`space()`): a namespace registered with
    leadflow's search attributes, so workflow ids, listings and counts never meet another
    module's. The server lives on an event loop in a thread of its own: a space may be taken
    from any thread, with or without a running loop. tests/conftest.py's `shared_server` fixture
    starts it at the first test that asks, and stops it at the end of the session."""

    def __init__(self) -> None:
        self._loop = LoopThread("shared-dev-server")
        self._run = self._loop.run
        self._lock = threading.Lock()
        self._taken = 0
        self._env, self.port = self._run(dev_server())

    def space(self, name: str) -> Space:
        """A new namespace (`name-N`) with its task queue `name`."""
        with self._lock:
            self._taken += 1
            namespace = f"{name}-{self._taken}"
        self._run(self._register(namespace))
        return Space(self.port, namespace, name)

    async def _register(self, namespace: str) -> None:
        from leadflow.temporal import ensure_search_attributes

        await self._env.client.workflow_service.register_namespace(RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)))
        await ensure_search_attributes(self._env.client, namespace)

    def close(self) -> None:
        try:
            self._run(self._env.shutdown())
        finally:
            self._loop.stop()


def replayer() -> Replayer:
    from workflows.handoff import HandoffWorkflow

    return Replayer(workflows=[LeadWorkflow, HandoffWorkflow], data_converter=pydantic_data_converter)


async def start_lead(client: Client, task_queue: str, lead_id: str, event: dict[str, Any],
                     options: LeadOptions | None = None) -> WorkflowHandle[LeadWorkflow, Any]:
    """Start (or join) a lead with an event, by signal-with-start as the intake does (the SDK
    takes the start signal by name only)."""
    return await client.start_workflow(
        LeadWorkflow.run, args=[event, options or LeadOptions(index=False)], id=lead_id,
        task_queue=task_queue, start_signal=EVENT_SIGNAL, start_signal_args=[event])


async def settled(handle: WorkflowHandle[LeadWorkflow, Any]) -> LeadView:
    """The lead once it has taken everything sent to it: a query answers from the workflow's
    last activation, which may come before a signal's evaluation."""
    last = LeadView()
    for _ in range(100):
        view = await handle.query(LeadWorkflow.state)
        if view == last:
            return view
        last = view
        await asyncio.sleep(0.05)
    return last


@dataclasses.dataclass
class Harness:
    env: WorkflowEnvironment
    client: Client
    settings: Settings
    store: PolicyStore
    delivery: Delivery

    async def signup(self, email: str, options: LeadOptions | None = None, data: dict[str, Any] | None = None,
                     **profile: Any) -> WorkflowHandle:
        """Start (or join) the lead with its sign-up, and wait until the sign-up is applied: a
        query answers from the workflow's last activation, which may precede the evaluation."""
        event = {"id": f"signup-{email}", "type": "signup", "lead": {"email": email, **profile},
                 "data": data or {}}
        # by name: its tests read the lead's state and result as JSON objects
        handle = await self.client.start_workflow(
            "LeadWorkflow", args=[event, options or LeadOptions(index=False)],
            id=lead_key(LeadRef(email=email)), task_queue=self.settings.task_queue,
            start_signal=EVENT_SIGNAL, start_signal_args=[event])
        for _ in range(200):
            if (await self.state(handle))["events"] >= 1:
                return handle
            await asyncio.sleep(0.05)
        raise AssertionError(f"{email}: the sign-up was never applied")

    async def state(self, handle: WorkflowHandle) -> dict[str, Any]:
        return await handle.query("state")

    async def hot_lead_with_task(self, email: str) -> tuple[WorkflowHandle, dict[str, Any], WorkflowHandle]:
        """A hot lead that asked for a demo, its state, and the hand-off task that opened for it."""
        lead = await self.signup(email, **HOT)
        await lead.execute_update("submit", {"id": "d", "type": "demo_request"})
        st = await self.state(lead)
        return lead, st, self.client.get_workflow_handle(st["open_handoff"])

    async def delivered(self, lead_id: str, kind: str,
                        until: Callable[[list[dict[str, Any]]], bool] = bool) -> list[dict[str, Any]]:
        """The lead's deliveries of a kind (email, handoff, escalation) in the ledger, oldest
        first, once `until` holds for them (by default: there are some). A lead delivers on the
        side, after its Decision has answered; with no SMTP server or webhook configured each
        is recorded as `skipped`, which is as far as these tests need them to go."""
        for _ in range(200):
            messages = sorted(self.delivery.ledger.list(lead=lead_id, kind=kind),
                              key=lambda m: m["created_at"])
            if until(messages) and all(m["status"] not in ("sending", "retrying") for m in messages):
                return messages
            await asyncio.sleep(0.05)
        raise AssertionError(f"{lead_id}: the {kind} messages never got there: {messages}")

    async def replay(self, name: str, *handles: WorkflowHandle) -> None:
        """Replay what just ran with Temporal's Replayer (non-determinism fails the test);
        with LEADFLOW_RECORD_HISTORIES=1, keep it under tests/workflows/histories/ for CI to replay."""
        for i, handle in enumerate(handles):
            history = await handle.fetch_history()
            await replayer().replay_workflow(history)
            if os.environ.get("LEADFLOW_RECORD_HISTORIES"):
                HISTORIES.mkdir(exist_ok=True)
                record = {"workflow_id": history.workflow_id, "history": json.loads(history.to_json())}
                (HISTORIES / f"{name}-{i}.json").write_text(json.dumps(record))


_EVALUATORS: EvaluatorPool | None = None


def evaluators() -> EvaluatorPool:
    """One pool of evaluator processes for the whole test run: a worker's real evaluation path,
    without spawning two processes per test."""
    global _EVALUATORS
    if _EVALUATORS is None:
        _EVALUATORS = EvaluatorPool(2, deadline=30)
    return _EVALUATORS


@contextlib.asynccontextmanager
async def harness(tmp_path: Path, policy_dir: Path | None = None,
                  pool: EvaluatorPool | None = None, governed: bool = False,
                  **settings_: Any) -> AsyncIterator[Harness]:
    """`settings_` are more Settings fields (an SMTP server, webhooks) for delivery tests. With
    `governed`, the worker takes its policy versions from the shared database as `worker.py`
    does; otherwise the newest file in the folder is active."""
    settings = Settings(home=tmp_path, policy_dir=policy_dir or ROOT / "policies",
                        content_dir_setting=ROOT / "content",
                        task_queue=f"test-{tmp_path.name}", **settings_)
    ledger = Database.of(settings)
    store = PolicyStore(settings.policy_dir, content_dir=settings.content_dir,
                        registry=Registry(ledger) if governed else None)
    store.reload()
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"), data_converter=pydantic_data_converter)
    delivery = delivery_for(settings, store, ledger)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as threads:
            worker = build_worker(env.client, settings, store, threads, pool or evaluators(), delivery)
            async with worker:
                yield Harness(env, env.client, settings, store, delivery)
    finally:
        await env.shutdown()
        delivery.close()


@contextlib.asynccontextmanager
async def api(h: Harness) -> AsyncIterator[str]:
    """The API and pages on uvicorn at the harness's LEADFLOW_HTTP, on this loop, against the
    harness's server: the links in its e-mail point here. Yields the base URL."""
    import uvicorn

    from leadflow.api.main import create_app

    host, port = h.settings.listen
    server = uvicorn.Server(uvicorn.Config(create_app(h.settings, h.client), host=host, port=port,
                                           log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():  # uvicorn leaves with SystemExit, which would hang asyncio.run's cleanup
            try:
                serving.result()
            except SystemExit:
                raise RuntimeError("the API did not start (its log says why)") from None
        await asyncio.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await serving
