"""End to end through Temporal: events/s and p50/p99 event-to-state latency of LeadWorkflow,
against a bare workflow that only counts signals, on the same dev server in the same run
(each worker in its own process); and the lead worker's RSS with 1,000 and 10,000 open leads.
Last line: one JSON object.

Throughput: signals to `leads` leads, `events` each, as fast as the client sends them.
Latency: the `submit` update's round trip (the event goes in, its new state comes back), from 8
leads at once, each sending its next event when the last one answered. Both are measured in
`rounds` alternating rounds (bare, lead, bare, ...) and pooled over the rounds.

    .venv/bin/python bench/e2e.py [--leads 40] [--events 50] [--samples 800] [--rounds 4] [--open 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
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

from rules.identity import lead_key  # noqa: E402
from rules.models import LeadRef  # noqa: E402
from service.temporal import binary  # noqa: E402
from workflows import search  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Target:
    """One kind of workflow under load: how to start it, send to it and read its count."""

    def __init__(self, client: Client, kind: str) -> None:
        self.client, self.kind = client, kind
        self.queue = "leadflow" if kind == "lead" else "bare"
        self.workflow = "LeadWorkflow" if kind == "lead" else "BareWorkflow"

    def wid(self, i: int, tag: str) -> str:
        email = f"{tag}{i}@bench.example"
        return lead_key(LeadRef(email=email)) if self.kind == "lead" else f"bare-{tag}{i}"

    async def start(self, i: int, tag: str) -> str:
        email = f"{tag}{i}@bench.example"
        event = {"id": f"{tag}{i}-signup", "type": "signup", "lead": {"email": email, "role": "manager"}}
        wid = self.wid(i, tag)
        await self.client.start_workflow(self.workflow, args=[event], id=wid, task_queue=self.queue,
                                         start_signal="event", start_signal_args=[event])
        return wid

    def event(self, i: int, n: int, tag: str) -> dict:
        kind = ("email_open", "page_view", "email_click")[n % 3]
        return {"id": f"{tag}{i}-{n}", "type": kind, "lead": {"email": f"{tag}{i}@bench.example"},
                "data": {"path": "/blog/x"}}

    async def count(self, wid: str) -> int:
        h = self.client.get_workflow_handle(wid)
        if self.kind == "lead":
            return (await h.query("state"))["events"]
        return await h.query("count")


async def throughput(t: Target, leads: int, events: int, tag: str) -> float:
    wids = [await t.start(i, tag) for i in range(leads)]
    while [await t.count(w) for w in wids] != [1] * leads:
        await asyncio.sleep(0.05)
    started = time.perf_counter()
    sem = asyncio.Semaphore(64)

    async def one(i: int, n: int) -> None:
        async with sem:
            await t.client.get_workflow_handle(wids[i]).signal("event", t.event(i, n, tag))

    await asyncio.gather(*(one(i, n) for n in range(events) for i in range(leads)))
    while sum([await t.count(w) for w in wids]) < leads * (events + 1):
        await asyncio.sleep(0.05)
    return leads * events / (time.perf_counter() - started)


async def latency(t: Target, samples: int, tag: str, concurrency: int = 8) -> list[float]:
    wids = [await t.start(i, tag) for i in range(concurrency)]
    for w in wids:
        while await t.count(w) < 1:
            await asyncio.sleep(0.05)
    out: list[float] = []

    async def lane(i: int) -> None:
        for n in range(samples // concurrency):
            begin = time.perf_counter()
            await t.client.get_workflow_handle(wids[i]).execute_update("submit", t.event(i, n, tag))
            out.append((time.perf_counter() - begin) * 1000)

    await asyncio.gather(*(lane(i) for i in range(concurrency)))
    return out


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1]


async def open_leads(t: Target, upto: int, start_from: int) -> None:
    sem = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with sem:
            await t.start(i, "open")

    await asyncio.gather(*(one(i) for i in range(start_from, upto)))
    # the signup of the last lead processed means the backlog drained (task queue is FIFO-ish)
    for i in range(start_from, upto, max(1, (upto - start_from) // 20)):
        while True:
            try:
                if await t.count(t.wid(i, "open")) >= 1:
                    break
            except Exception:
                pass
            await asyncio.sleep(0.2)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=40)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--samples", type=int, default=800, help="latency samples per workflow, all rounds")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--open", type=int, default=10_000)
    args = ap.parse_args()

    port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"), port=port, ui=False,
        search_attributes=search.ALL, data_converter=pydantic_data_converter,
        dev_server_log_level="error")
    home = tempfile.mkdtemp(prefix="leadflow-e2e-")
    wenv = {**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{port}", "LEADFLOW_HOME": home,
            "LEADFLOW_POLICY_DIR": str(ROOT / "policies")}
    logs = open(Path(home) / "workers.log", "ab")  # noqa: SIM115
    lead_worker = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=wenv,
                                   stdout=logs, stderr=subprocess.STDOUT)
    bare_worker = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bare_worker.py")], cwd=ROOT,
                                   env=wenv, stdout=logs, stderr=subprocess.STDOUT)
    try:
        client = env.client
        lead, bare = Target(client, "lead"), Target(client, "bare")
        await asyncio.sleep(2)
        # warm both up, then measure in alternating rounds and pool the rounds: the machine's
        # drift and hiccups land on both, and a p99 over every sample is steadier than one round's
        await throughput(bare, 5, 10, "warm")
        await throughput(lead, 5, 10, "warm")
        per_round = max(8, args.samples // args.rounds)
        tp: dict[str, list[float]] = {"bare": [], "lead": []}
        lat: dict[str, list[float]] = {"bare": [], "lead": []}
        for r in range(args.rounds):
            for name, target in (("bare", bare), ("lead", lead)):
                tp[name].append(await throughput(target, args.leads, args.events, f"tp{r}-"))
                lat[name] += await latency(target, per_round, f"lat{r}-")
            print(f"round {r + 1}: throughput LeadWorkflow {tp['lead'][-1]:,.0f} events/s, "
                  f"bare {tp['bare'][-1]:,.0f} events/s")
        # events/s over all rounds: total events over total time
        lead_tp = len(tp["lead"]) / sum(1 / x for x in tp["lead"])
        bare_tp = len(tp["bare"]) / sum(1 / x for x in tp["bare"])
        print(f"throughput: LeadWorkflow {lead_tp:,.0f} events/s, bare {bare_tp:,.0f} events/s")
        lead_lat, bare_lat = lat["lead"], lat["bare"]
        figures = {
            "p50_ms": round(pct(lead_lat, 50), 2), "p99_ms": round(pct(lead_lat, 99), 2),
            "bare_p50_ms": round(pct(bare_lat, 50), 2), "bare_p99_ms": round(pct(bare_lat, 99), 2),
            "latency_samples": len(lead_lat),
        }
        print(f"event-to-state latency (update round trip): LeadWorkflow p50 {figures['p50_ms']} ms "
              f"p99 {figures['p99_ms']} ms; bare p50 {figures['bare_p50_ms']} ms "
              f"p99 {figures['bare_p99_ms']} ms")
        rss = {}
        opened = 0
        for target in sorted({1000, min(args.open, 5000), args.open}):
            await open_leads(lead, target, opened)
            opened = target
            await asyncio.sleep(1)
            rss[target] = rss_mb(lead_worker.pid)
            print(f"worker RSS with {target:,} open leads: {rss[target]:.1f} MB")
        result = {
            "bench": "e2e", "events_per_s": round(lead_tp, 1), "bare_events_per_s": round(bare_tp, 1),
            "throughput_ratio": round(lead_tp / bare_tp, 3), **figures,
            "p99_ratio": round(figures["p99_ms"] / figures["bare_p99_ms"], 3),
            "rss_mb_1000_leads": round(rss[1000], 1), "rss_mb_open_leads": round(rss[args.open], 1),
            "open_leads": args.open,
        }
        print(json.dumps(result))
    finally:
        for p in (lead_worker, bare_worker):
            p.kill()
            p.wait()
        logs.close()
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
