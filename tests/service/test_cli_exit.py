"""Client commands exit with their own status and print nothing after their output, even when the
machine is busy (the Temporal client's runtime threads used to abort the process at interpreter
shutdown, temporalio/sdk-python#300: exit 134 or a segfault after the work was done).

Each command runs LEADFLOW_EXIT_RUNS times beside LEADFLOW_EXIT_BUSY busy loops: 4 times beside
one by default (`make test`, whose other parts keep the cores busy too); `make soak-exits` runs
each 30 times beside two, for an abort that comes once in many exits."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys

from activities.policies import PolicyStore
from leadflow.intake import send
from leadflow.settings import Settings
from tests.support.temporal_harness import ROOT, evaluators
from worker import build_worker

RUNS = int(os.environ.get("LEADFLOW_EXIT_RUNS", "4"))
BUSY = int(os.environ.get("LEADFLOW_EXIT_BUSY", "1"))
LEADFLOW = str(ROOT / ".venv" / "bin" / "leadflow")


def test_every_client_command_exits_cleanly_run_after_run_with_the_cores_kept_busy(tmp_path, shared_server):
    space = shared_server.space("exits")

    async def scenario():
        client = await space.client()
        settings = Settings(home=tmp_path, policy_dir=ROOT / "policies", task_queue=space.task_queue)
        store = PolicyStore(settings.policy_dir, content_dir=settings.content_dir)
        store.reload()
        environ = {**os.environ, **space.environ(), "LEADFLOW_HOME": str(tmp_path)}
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(BUSY)]
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=4) as threads:
                async with build_worker(client, settings, store, threads, evaluators()):
                    hot = {"email": "exit@acme.example", "role": "vp", "budget": 60000, "timeline": "now"}
                    lead = (await send(client, settings, {"id": "x0", "type": "signup", "lead": hot},
                                       wait=True))["lead_id"]
                    await send(client, settings, {"id": "x1", "type": "demo_request",
                                                      "lead": {"email": hot["email"]}}, wait=True)
                    task = f"handoff-{lead}-1"
                    commands = [(["lead", lead, "--json"], None, '"lead_id"'),
                                (["leads", "--json"], None, '"id"'),
                                (["task", "show", task, "--json"], None, '"status"')]
                    commands += [(["send", "--json", "-"], json.dumps({"id": f"v{i}", "type": "page_view",
                                                                       "lead": {"email": hot["email"]}}),
                                  '"accepted"') for i in range(RUNS)]
                    runs = [c for c in commands[:3] for _ in range(RUNS)] + commands[3:]
                    gate = asyncio.Semaphore(3)
                    results = await asyncio.gather(*(_run(gate, environ, *c) for c in runs))
        finally:
            for p in busy:
                p.kill()
        failures = [r for r in results if r]
        assert failures == [], f"{len(failures)} of {len(runs)} runs failed, e.g. {failures[:3]}"
        assert len(runs) == 4 * RUNS

    asyncio.run(scenario())


async def _run(gate: asyncio.Semaphore, environ: dict[str, str], args: list[str], stdin: str | None,
               expect: str) -> str | None:
    """None when the command did its work, exited 0 and printed nothing after its output."""
    async with gate:
        proc = await asyncio.create_subprocess_exec(
            LEADFLOW, *args, cwd=ROOT, env=environ, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 120)
    text = out.decode()
    if proc.returncode != 0 or err.strip() or expect not in text or not text.rstrip().endswith(("}", "]")):
        return f"{' '.join(args)}: exit {proc.returncode}, stderr {err.decode()[-300:]!r}"
    return None
