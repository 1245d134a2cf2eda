"""`leadflow up`: the whole thing on the embedded default (or the cluster settings name)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from service.demo import play
from service.settings import Settings
from service.temporal import connect, start_embedded
from worker import run_worker

log = logging.getLogger("leadflow.up")


async def up(settings: Settings, demo: bool = True, exit_after_demo: bool = False) -> None:
    env = None
    if settings.embedded:
        print(f"starting the embedded Temporal dev server (state in {settings.home / 'temporal.db'})")
        env = await start_embedded(settings)
        client = env.client
        print(f"Temporal Web UI: http://127.0.0.1:{settings.ui_port}   "
              f"(frontend 127.0.0.1:{settings.dev_port})")
    else:
        client = await connect(settings)
        print(f"connected to {settings.connect['target_host']} namespace {settings.namespace}")
    worker = asyncio.create_task(run_worker(settings, client))
    try:
        if demo:
            await asyncio.sleep(0.5)
            if worker.done():
                worker.result()
            await asyncio.wait_for(play(client, settings), timeout=timedelta(minutes=2).total_seconds())
            print("\nsee them: leadflow leads | leadflow tasks | leadflow lead ana.ruiz@acme.example"
                  " | leadflow outbox")
        if exit_after_demo:
            return
        print("worker running; Ctrl-C stops it (leads and timers live on in the server)")
        await worker
    finally:
        worker.cancel()
        if env is not None:
            await env.shutdown()
