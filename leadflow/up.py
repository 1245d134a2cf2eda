"""`leadflow up`: the whole thing on the embedded default (or the cluster settings name)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from leadflow.api.main import start as start_api
from leadflow.delivery import inbound
from leadflow.delivery.sink import start_sink
from leadflow.demo import generated_history, play
from leadflow.keys import demo_keys
from leadflow.ops import metrics
from leadflow.settings import Settings
from leadflow.temporal import connect, start_embedded
from worker import run_worker

log = logging.getLogger("leadflow.up")


async def up(settings: Settings, demo: bool = True, exit_after_demo: bool = False) -> None:
    env = None
    # one process: the worker's and the API's metrics (and Temporal's) on one exporter
    runtime = metrics.try_runtime(settings.metrics_addr)
    keyring, where = settings.keyring()  # made under .leadflow/ on the first start when none is set
    print(f"payloads in Temporal encrypted with key {keyring.current[0]} (from {where}); the Web UI "
          f"reads them through http://{settings.listen[0]}:{settings.listen[1]}/codec (README: Security)")
    if settings.embedded:
        print(f"starting the embedded Temporal dev server (state in {settings.home / 'temporal.db'})")
        env = await start_embedded(settings, runtime)
        client = env.client
        print(f"Temporal Web UI: http://127.0.0.1:{settings.ui_port}   "
              f"(frontend 127.0.0.1:{settings.dev_port})")
    else:
        client = await connect(settings, runtime)
        print(f"connected to {settings.connect['target_host']} namespace {settings.namespace}")
    if not settings.api_keys and not settings.api_keys_file:
        keys_file = settings.home / "api-keys"
        keys = demo_keys(keys_file)
        settings = settings.model_copy(update={"api_keys_file": str(keys_file)})
    else:
        keys = {}
    mail = None
    if not settings.smtp_host:
        # no mail server at hand: a local sink keeps each e-mail under .leadflow/mail/ (see /mail)
        mail = start_sink(settings.mail_dir, inbound=inbound.for_sink(client, settings))
        settings = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": mail.port,
                                               "smtp_tls": "none", "smtp_user": "", "smtp_password": ""})
        print(f"no LEADFLOW_SMTP_HOST: e-mail goes to a local sink at 127.0.0.1:{mail.port}, "
              f"kept in {settings.mail_dir}")
    worker = asyncio.create_task(run_worker(settings, client))
    api: asyncio.Task[None] | None = None
    try:
        api = await start_api(settings, client)
        if demo:
            await asyncio.sleep(0.5)
            for task in (worker, api):
                if task.done():
                    task.result()
            await asyncio.wait_for(play(client, settings), timeout=timedelta(minutes=2).total_seconds())
            for line in await asyncio.to_thread(generated_history, settings):
                print(line)
            print("\nsee them: leadflow leads | leadflow tasks | leadflow lead ana.ruiz@acme.example"
                  " | leadflow deliveries")
        host, port = settings.listen
        base = f"http://{host}:{port}"
        print(f"\nsales inbox:  {base}/inbox")
        print(f"e-mail:       {base}/mail" + ("   (the local sink's catch)" if mail else ""))
        print(f"sign-up form: {base}/f/signup   (forms/signup.yaml; the script for your site: {base}/c.js)")
        print(f"deliveries:   {base}/deliveries   (ops)")
        print(f"funnel:       {base}/funnel   (ops; or leadflow report funnel)")
        print(f"policy desk:  {base}/policies   (the policy in words; proposals, their diff, approvals)")
        print(f"API docs:     {base}/docs   (OpenAPI: {base}/openapi.json)")
        if runtime is not None:
            print(f"metrics:      http://{settings.metrics_addr}/metrics   (Prometheus: the worker's, the "
                  f"API's and Temporal's; also {base}/metrics)")
        if settings.embedded:
            print(f"Temporal UI:  http://127.0.0.1:{settings.ui_port}")
        for role, key in keys.items():
            print(f"{role + ' key:':<13} {key}")
        if keys:
            print(f"(demo keys, made for this machine in {settings.api_keys_file}; never commit them)")
        if exit_after_demo:
            return
        print("worker and API running; Ctrl-C stops them (leads and timers live on in the server)",
              flush=True)
        await asyncio.gather(worker, api)
    finally:
        worker.cancel()
        if api is not None:
            api.cancel()  # uvicorn shuts down as on a signal; wait for it, or its lifespan is cut off
            with contextlib.suppress(asyncio.CancelledError):
                await api
        if env is not None:
            await env.shutdown()
        if mail is not None:
            mail.stop()
