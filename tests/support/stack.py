"""The whole service for tests that use it from outside: a real Temporal dev server, a worker, and
the API and pages on uvicorn, all on free loopback ports, run on an event loop in a thread of
their own so a test (or a browser) can talk to them as a client would."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from activities.policies import PolicyStore
from leadflow.settings import Settings
from tests.support.temporal_harness import ROOT, SharedDevServer, dev_server, evaluators, free_port

KEYS = {"intake": "intake-key-0123456789abcdef", "sales": "sales-key-0123456789abcdef",
        "ops": "ops-key-0123456789abcdef", "admin": "admin-key-0123456789abcdef"}


def until(check: Callable[[], Any], seconds: float = 30) -> Any:
    """The first true value `check` gives within `seconds` (polled), else its last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


class Stack:
    def __init__(self, home: Path, queue: str = "stack", codec_keys: str = "", database: bool = False,
                 worker: bool = True, server: SharedDevServer | None = None, governed: bool = False,
                 **settings_: Any) -> None:
        """As production runs: every client (the worker's, the API's, the test's, a CLI's with the
        same LEADFLOW_HOME) on the settings' codec, its key `codec_keys` or made under `home`.
        `database`: the server keeps its state in `home`/temporal.db. `worker`: False for tests of
        what only the API and the database do (no workflow runs; it starts sooner). `server`: the
        session's shared dev server (tests/conftest.py's `shared_server`) instead of one of the
        stack's own; the stack then takes a namespace of its own there (`space`) for its worker,
        its API and the test's client; the settings still name the embedded server at its port,
        `space.environ()` is what a CLI beside it needs. `governed`: the worker takes the active
        version from the shared database and looks again every half second, as `worker.py` does
        (otherwise the newest file decides). `settings_`: more Settings."""
        assert not (server and database), "a server of its own keeps its state in home/temporal.db"
        given: dict[str, Any] = {"api_keys": ",".join(f"{role}:{key}" for role, key in KEYS.items()),
                                 **settings_}
        self.settings = Settings(home=home, policy_dir=ROOT / "policies", task_queue=queue,
                                 http=f"127.0.0.1:{free_port()}", codec_keys=codec_keys, **given)
        self.database = database
        self.worker = worker
        self.governed = governed
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="stack", daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self.client: Client | None = None
        self.settings_port = 0
        self.space = server.space(queue) if server else None

    @property
    def url(self) -> str:
        host, port = self.settings.listen
        return f"http://{host}:{port}"

    def http(self, role: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {KEYS[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        """Run a coroutine on the stack's loop (where its Temporal client lives)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> Stack:
        self._thread.start()
        if not self._ready.wait(120) or self._failure is not None:
            raise RuntimeError(f"the stack did not start: {self._failure!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as err:  # noqa: BLE001 (reported to the starting thread)
            self._failure = err
            self._ready.set()
        finally:
            self.loop.close()

    async def _main(self) -> None:
        import uvicorn

        from leadflow.api.main import create_app
        from leadflow.ops import tracing
        from leadflow.temporal import connect, converter

        self._stop = asyncio.Event()
        # settings_port: the Temporal frontend's port, for clients run beside the stack
        if self.space:  # on the shared server: its clients (worker, API, test) on the stack's namespace
            env, self.settings_port = None, self.space.port
            self.settings = self.settings.model_copy(update={"dev_port": self.settings_port})
            self.client = await self.space.client(converter(self.settings),
                                                  interceptors=tracing.interceptors())
        else:
            env, self.settings_port = await dev_server(
                database=self.settings.home / "temporal.db" if self.database else None)
            self.settings = self.settings.model_copy(update={"dev_port": self.settings_port})
            self.client = await connect(self.settings)
        registry = None
        if self.governed:
            from leadflow.db.database import Database
            from leadflow.governance.registry import Registry

            registry = Registry(await asyncio.to_thread(Database.of, self.settings))
        store = PolicyStore(self.settings.policy_dir, content_dir=self.settings.content_dir,
                            registry=registry)
        store.reload()
        if self.worker:
            from worker import build_worker
        host, port = self.settings.listen
        self.app = create_app(self.settings, self.client)
        server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=port,
                                               log_level="warning", access_log=False))
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as threads:
                async with (build_worker(self.client, self.settings, store, threads, evaluators())
                            if self.worker else contextlib.nullcontext()):
                    serving = asyncio.create_task(server.serve())
                    while not server.started:
                        if serving.done():
                            serving.result()
                        await asyncio.sleep(0.05)
                    if self.governed:
                        from worker import watch_policies

                        watching = asyncio.create_task(watch_policies(store, 0.5))
                    self._ready.set()
                    await self._stop.wait()
                    if self.governed:
                        watching.cancel()
                    server.should_exit = True
                    await serving
        finally:
            if env is not None:
                await env.shutdown()
