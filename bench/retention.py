"""What ending leads saves: the same generated leads through a real dev server (SQLite file) and a
worker process, once with leads kept running for LEADFLOW_FINAL_RETENTION=30d (as if they never
ended) and once with 0s (a lead in a final state completes at once; a later event starts its
next run through the intake). Reports, for each: workflows still running, the server's database
size, and the worker's memory (its process and its evaluator processes). Last line: one JSON
object.

    .venv/bin/python bench/retention.py [--leads 10000] [--events-per-lead 4] [--seed 5] [--settle 5]

Each lead's first events of a 90-day generated history (sales answers and timers left out)
are sent as fast as the worker takes them, so the history's weeks pass in minutes and no timer
fires: what ends is what the events themselves end (junk disqualified at sign-up, unsubscribes
do not end a lead). Closed workflows stay in the server's database until the namespace's own
retention deletes them (a day on the dev server), so the database figure is the cost of the
histories written, not of those kept."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from temporalio.client import Client  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from bench.quick import parse  # noqa: E402
from leadflow.codec.aesgcm import data_converter  # noqa: E402
from leadflow.codec.keys import Keyring, new_key_line  # noqa: E402
from leadflow.intake import check_event, deliver  # noqa: E402
from leadflow.replay.generate import generate  # noqa: E402
from leadflow.settings import Settings  # noqa: E402
from leadflow.temporal import binary  # noqa: E402
from workflows import search  # noqa: E402

SKIPPED = ("sales_accept", "sales_reject", "sla_breach", "check")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the evaluator processes)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


def history(leads: int, per_lead: int, seed: int) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for raw in generate(leads, 90, seed):
        kept = out.setdefault(raw["lead_id"], [])
        if raw["type"] not in SKIPPED and len(kept) < per_lead:
            kept.append({k: v for k, v in raw.items() if k != "lead_id"})
    return out


def archived(home: str) -> int:
    try:
        with sqlite3.connect(f"file:{home}/leadflow.sqlite?mode=ro", uri=True, timeout=30) as db:
            return int(db.execute("select count(*) from events").fetchone()[0])
    except sqlite3.Error:
        return 0


async def run(mode: str, retention: str, leads: dict[str, list[dict]], settle: float = 5) -> dict[str, float]:
    home = tempfile.mkdtemp(prefix=f"leadflow-retention-{mode}-")
    port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"), port=port, ui=False, search_attributes=search.ALL,
        data_converter=pydantic_data_converter, dev_server_log_level="error",
        dev_server_database_filename=f"{home}/temporal.db")
    keys = new_key_line()
    wenv = {**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{port}", "LEADFLOW_HOME": home,
            "LEADFLOW_POLICY_DIR": str(ROOT / "policies"), "LEADFLOW_CODEC_KEYS": keys,
            "LEADFLOW_SECRET": secrets.token_urlsafe(32),  # required with a TEMPORAL_ADDRESS
            "LEADFLOW_FINAL_RETENTION": retention}
    logs = open(Path(home) / "worker.log", "ab")  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=wenv,
                              stdout=logs, stderr=subprocess.STDOUT)
    try:
        client = await Client.connect(f"127.0.0.1:{port}", data_converter=data_converter(Keyring.parse(keys)))
        settings = Settings(task_queue="leadflow")
        sent = 0
        gate = asyncio.Semaphore(64)

        async def one(events: list[dict]) -> None:
            nonlocal sent
            async with gate:
                for event in events:  # in order: the sign-up first
                    await deliver(client, settings, check_event(event))
                    sent += 1

        started = time.perf_counter()
        await asyncio.gather(*(one(events) for events in leads.values()))
        while archived(home) < sent:  # every event evaluated and archived
            await asyncio.sleep(1)
        took = time.perf_counter() - started
        await asyncio.sleep(settle)  # completions and index writes settle
        running = await client.count_workflows("WorkflowType='LeadWorkflow' AND ExecutionStatus='Running'")
        closed = await client.count_workflows("WorkflowType='LeadWorkflow' AND ExecutionStatus='Completed'")
        db = sum(p.stat().st_size for p in Path(home).glob("temporal.db*"))
        figures = {"events": sent, "seconds": round(took, 1), "running": running.count,
                   "completed_runs": closed.count, "db_mb": round(db / 2**20, 1),
                   "worker_rss_mb": round(tree_rss_mb(worker.pid), 1)}
        print(f"{mode} (LEADFLOW_FINAL_RETENTION={retention}): {json.dumps(figures)}", flush=True)
        return figures
    finally:
        worker.terminate()
        worker.wait(60)
        await env.shutdown()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=10_000)
    ap.add_argument("--events-per-lead", type=int, default=4)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--settle", type=float, default=5,
                    help="seconds for completions and index writes to settle before counting")
    args = parse(ap, {"leads": 300})
    leads = history(args.leads, args.events_per_lead, args.seed)
    print(f"{len(leads):,} leads, {sum(map(len, leads.values())):,} events", flush=True)
    kept = await run("kept", "30d", leads, args.settle)
    ended = await run("ended", "0s", leads, args.settle)
    print(json.dumps({"bench": "retention", "leads": len(leads), "kept": kept, "ended": ended,
                      "running_ratio": round(ended["running"] / max(kept["running"], 1), 3),
                      "worker_rss_ratio": round(ended["worker_rss_mb"] / kept["worker_rss_mb"], 3),
                      "db_ratio": round(ended["db_mb"] / kept["db_mb"], 3)}))


if __name__ == "__main__":
    asyncio.run(main())
