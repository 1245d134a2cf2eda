"""The HTTP API and the pages: one FastAPI app. `leadflow serve` runs it on uvicorn at
LEADFLOW_HTTP; it reaches Temporal through the same settings as the worker."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from temporalio.client import Client
from temporalio.service import RPCError

if TYPE_CHECKING:
    import uvicorn

from activities.policies import PolicyStore
from leadflow.api import (
    codec,
    collect,
    crm,
    deliveries,
    events,
    forms,
    health,
    leads,
    links,
    mail_inbound,
    people,
    policies,
    roster,
    tasks,
)
from leadflow.api.body_limit import BodyLimit
from leadflow.api.context import Context
from leadflow.api.sites import site_cors
from leadflow.codec.aesgcm import AesGcmCodec
from leadflow.db.database import Database
from leadflow.delivery.machines import NETWORKS, Judge
from leadflow.governance.registry import Registry
from leadflow.intake import IntakeError
from leadflow.keys import Keys
from leadflow.ops import metrics
from leadflow.routing.desk import Desk
from leadflow.seen import SeenEvents
from leadflow.settings import Settings
from leadflow.signing import links_of
from leadflow.tracking.visitors import visitors_of

log = logging.getLogger("leadflow.api")


def create_app(settings: Settings, client: Client | None = None, keys: Keys | None = None) -> FastAPI:
    """The app. Without a client, it connects to Temporal at start (as settings say)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from leadflow.temporal import connect

        if (problem := settings.check_secret()) is not None:  # refused outside the embedded setup
            log.warning("%s", problem)
        settings.check_crm()
        ledger = await asyncio.to_thread(Database.of, settings)
        store = PolicyStore(settings.policy_dir, settings.policy, settings.content_dir, Registry(ledger))
        await asyncio.to_thread(store.reload)
        seen = SeenEvents.of(settings)  # scoped to the Temporal server (and database) of these settings
        judge = Judge(NETWORKS + settings.machine_networks, settings.machine_open_seconds,
                      settings.machine_click_seconds)
        known = keys or Keys.load(settings.api_keys, settings.api_keys_file)
        known = dataclasses.replace(known, pepper=settings.key_for("key-fingerprint").encode())
        app.state.ctx = Context(settings, client or await connect(settings), store, seen, known,
                                settings.key_for("page-tokens").encode(), ledger, links_of(settings), judge,
                                AesGcmCodec(settings.keyring()[0]), Desk(ledger, settings.roster_file))
        watcher = asyncio.create_task(_watch(store, settings.policy_poll_seconds))
        sweeper = asyncio.create_task(_forget_visitors(ledger, settings.anonymous_retention))
        try:
            yield
        finally:
            watcher.cancel()
            sweeper.cancel()
            seen.close()
            ledger.close()

    app = FastAPI(title="leadflow", version="1", lifespan=lifespan,
                  description="Lead lifecycle from policy files that sales and marketing write together. "
                              "Every /v1 route needs `Authorization: Bearer <key>`; roles: intake, sales, "
                              "ops, admin. A key may name the roster rep who holds it (`role/rep:key`): "
                              "`me` in `GET /v1/tasks?rep=me`, and who answers a task when `by` is empty.")
    routers = (events, leads, tasks, roster, crm, deliveries, policies, health, links, codec, collect, forms,
               mail_inbound, people)
    for module in routers:
        app.include_router(module.router)
    from leadflow.pages import routes as pages

    pages.mount(app, settings.key_for("session"), secure=settings.public.startswith("https://"))
    codec_cors(app, settings.codec_origins)
    site_cors(app, settings)
    app.add_middleware(BodyLimit, limit=settings.max_body)  # added last: the outermost, before all else

    @app.exception_handler(IntakeError)
    async def intake_error(_: Request, err: IntakeError) -> JSONResponse:
        # in the shape of FastAPI's own 422s: a list of problems, each at a field
        field, _colon, message = str(err).partition(": ")
        detail = [{"loc": ["query", field], "msg": message or str(err), "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(DBAPIError)
    @app.exception_handler(PoolTimeout)
    async def database_error(_: Request, err: Exception) -> JSONResponse:
        # the shared database slow, down or locked: a moment's trouble, said as such (never a 500)
        cause = getattr(err, "orig", None)
        log.warning("the shared database did not answer: %s", type(cause or err).__name__)
        return JSONResponse({"detail": "the shared database did not answer; try again shortly"},
                            status_code=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER)})

    @app.exception_handler(RPCError)
    async def temporal_error(_: Request, err: RPCError) -> JSONResponse:
        log.warning("Temporal refused or failed a call: %s", err.message)
        return JSONResponse({"detail": f"Temporal did not answer: {err.message}"}, status_code=503)

    return app


CORS_HEADERS = "authorization, content-type, x-namespace"
DATABASE_RETRY_AFTER = 5  # seconds a client is told to wait when the shared database is down


def codec_cors(app: FastAPI, origins: tuple[str, ...]) -> None:
    """CORS for /codec only, for the Temporal Web UI's origin: the UI calls it from the browser,
    with the ops session cookie when told to include credentials. Nothing else of the API or
    the pages answers another origin."""
    allowed = frozenset(origins)

    @app.middleware("http")
    async def cors(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        origin = request.headers.get("origin")
        if not request.url.path.startswith("/codec/") or origin is None:
            return await call_next(request)
        if origin not in allowed:
            return JSONResponse({"detail": f"origin {origin} may not call the codec "
                                           "(LEADFLOW_CODEC_CORS_ORIGINS)"}, status_code=403)
        headers = {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true",
                   "Vary": "Origin"}
        if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
            return Response(status_code=204, headers={
                **headers, "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": CORS_HEADERS, "Access-Control-Max-Age": "600"})
        response = await call_next(request)
        response.headers.update(headers)
        return response


async def _watch(store: PolicyStore, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        await asyncio.to_thread(store.reload)


async def _forget_visitors(ledger: Database, retention: float, every: float = 3600.0) -> None:
    """Anonymous visitors not seen for LEADFLOW_ANONYMOUS_RETENTION go, with their page views:
    at start, then hourly (every API process does it; the deletes are the same)."""
    visitors = visitors_of(ledger)
    while True:
        try:
            gone = await asyncio.to_thread(visitors.sweep, time.time() - retention)
            if gone:
                log.info("forgot %d page views of anonymous visitors (LEADFLOW_ANONYMOUS_RETENTION)", gone)
        except Exception as err:  # the database out of reach: the next round tries again
            log.warning("anonymous visitors not swept: %s", err)
        await asyncio.sleep(every)


async def serve(settings: Settings, client: Client | None = None) -> None:
    """Run the app on uvicorn until cancelled."""
    await (await start(settings, client))


async def _serve(server: uvicorn.Server) -> None:
    """uvicorn until cancelled, then shut down as on a signal: a cancelled `serve()` would cut
    the app's lifespan off in the middle and log it as an error."""
    serving = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        server.should_exit = True
        while not serving.done():  # a second cancel (a stop that cancels everything) waits too
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(serving)
        raise


async def start(settings: Settings, client: Client | None = None) -> asyncio.Task[None]:
    """Start the app on uvicorn; returns once it listens (the task runs until cancelled)."""
    import uvicorn

    from leadflow.temporal import connect

    if client is None:  # its own process: its metrics (and Temporal's) at /metrics
        client = await connect(settings, metrics.try_runtime(metrics.loopback()))  # unreachable: said here
    host, port = settings.listen
    server = uvicorn.Server(uvicorn.Config(create_app(settings, client), host=host, port=port,
                                           log_level="warning", access_log=False))
    task = asyncio.create_task(_serve(server))
    while not server.started:
        if task.done():
            task.result()  # it could not start: say why
            raise RuntimeError(f"the API did not start on {host}:{port}")
        await asyncio.sleep(0.05)
    return task
