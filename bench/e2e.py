"""End to end through Temporal: events/s and p50/p99 event-to-state latency of LeadWorkflow,
against a bare workflow that only counts signals, on the same dev server in the same run
(each worker in its own process); and the lead worker's RSS with 1,000 and 10,000 open leads.
Last line: one JSON object.

Throughput: signals to `leads` leads, `events` each, as fast as the client sends them.
Latency is the `submit` update's round trip (the event goes in, its new state comes back), at a
steady load: events due at a fixed rate over 16 leads, the same rate for every workflow (by
default half of what the lead answers a second when saturated). That is the p99 target's
figure. Saturated latency (8 leads, each sending its next event when the last one answered) is
reported too; on a saturated machine it is mostly queueing, i.e. the throughput again.
Latency is also measured for the floor: the bare workflow plus one no-op local activity per
answered event (`floor_*`). LeadWorkflow runs its evaluator as a local activity, so it cannot
beat that floor; the gap between the two is what leadflow's own code costs.
Everything is measured in `rounds` alternating rounds (bare, floor, lead, bare, ...), pooled.

    .venv/bin/python bench/e2e.py [--leads 40] [--events 50] [--samples 2000] [--rounds 4]
                               [--load 0.5] [--open 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
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

from bench.bare_worker import BareWorkflow, LocalActivityWorkflow  # noqa: E402
from bench.quick import parse  # noqa: E402
from leadflow.codec.aesgcm import data_converter  # noqa: E402
from leadflow.codec.keys import Keyring, new_key_line  # noqa: E402
from leadflow.temporal import binary  # noqa: E402
from rules.identity import lead_key  # noqa: E402
from rules.models import LeadRef  # noqa: E402
from workflows import search  # noqa: E402
from workflows.lead import EVENT_SIGNAL, LeadWorkflow  # noqa: E402


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
    """One kind of workflow under load: how to start it, send to it and read its count. All three
    take the `event` signal and the `submit` update under the same names."""

    WORKFLOWS = {"lead": LeadWorkflow, "bare": BareWorkflow, "floor": LocalActivityWorkflow}

    def __init__(self, client: Client, kind: str) -> None:
        self.client, self.kind = client, kind
        self.queue = "leadflow" if kind == "lead" else "bare"
        self.workflow = self.WORKFLOWS[kind]

    def wid(self, i: int, tag: str) -> str:
        email = f"{tag}{i}@bench.example"
        return lead_key(LeadRef(email=email)) if self.kind == "lead" else f"{self.kind}-{tag}{i}"

    async def start(self, i: int, tag: str) -> str:
        email = f"{tag}{i}@bench.example"
        event = {"id": f"{tag}{i}-signup", "type": "signup", "lead": {"email": email, "role": "manager"}}
        wid = self.wid(i, tag)
        # signal-with-start takes the signal by name only
        await self.client.start_workflow(self.workflow.run, event, id=wid, task_queue=self.queue,
                                         start_signal=EVENT_SIGNAL, start_signal_args=[event])
        return wid

    def event(self, i: int, n: int, tag: str) -> dict:
        kind = ("email_open", "page_view", "email_click")[n % 3]
        return {"id": f"{tag}{i}-{n}", "type": kind, "lead": {"email": f"{tag}{i}@bench.example"},
                "data": {"path": "/blog/x"}}

    async def count(self, wid: str) -> int:
        if self.kind == "lead":
            lead = self.client.get_workflow_handle_for(LeadWorkflow.run, wid)
            return (await lead.query(LeadWorkflow.state)).events
        # the baselines count every event, the floor's included
        return await self.client.get_workflow_handle(wid).query(self.workflow.counted)


async def throughput(t: Target, leads: int, events: int, tag: str) -> float:
    wids = [await t.start(i, tag) for i in range(leads)]
    while [await t.count(w) for w in wids] != [1] * leads:
        await asyncio.sleep(0.05)
    started = time.perf_counter()
    sem = asyncio.Semaphore(64)

    async def one(i: int, n: int) -> None:
        async with sem:
            await t.client.get_workflow_handle(wids[i]).signal(t.workflow.event, t.event(i, n, tag))

    await asyncio.gather(*(one(i, n) for n in range(events) for i in range(leads)))
    while sum([await t.count(w) for w in wids]) < leads * (events + 1):
        await asyncio.sleep(0.05)
    return leads * events / (time.perf_counter() - started)


async def started(t: Target, n: int, tag: str) -> list[str]:
    wids = [await t.start(i, tag) for i in range(n)]
    for w in wids:
        while await t.count(w) < 1:
            await asyncio.sleep(0.05)
    return wids


async def saturated(t: Target, samples: int, tag: str, lanes: int = 8) -> tuple[list[float], float]:
    """`lanes` leads each send their next event as soon as the last one answered: the update
    round trips, and how many answered a second."""
    wids = await started(t, lanes, tag)
    out: list[float] = []

    async def lane(i: int) -> None:
        for n in range(samples // lanes):
            begin = time.perf_counter()
            await t.client.get_workflow_handle(wids[i]).execute_update(t.workflow.submit, t.event(i, n, tag))
            out.append((time.perf_counter() - begin) * 1000)

    begin = time.perf_counter()
    await asyncio.gather(*(lane(i) for i in range(lanes)))
    return out, len(out) / (time.perf_counter() - begin)


async def paced(t: Target, samples: int, rate: float, tag: str, leads: int = 16) -> list[float]:
    """Events sent at a steady `rate` a second over `leads` leads, whether or not earlier ones
    have answered; each latency counts from when its event was due, so a stall is not hidden."""
    wids = await started(t, leads, tag)
    # each event goes to a lead drawn at random (seeded, so both workflows get the same order):
    # in turn, the leads would move in lockstep and reach their costlier events (a track switch
    # that sends) all at once, a burst no real stream of leads has
    rng = random.Random(tag)
    sent = [0] * leads
    plan = []
    for _ in range(samples):
        i = rng.randrange(leads)
        plan.append((i, sent[i]))
        sent[i] += 1
    out: list[float] = []
    start = time.perf_counter() + 0.2

    async def one(k: int) -> None:
        due = start + k / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        i, n = plan[k]
        await t.client.get_workflow_handle(wids[i]).execute_update(t.workflow.submit, t.event(i, n, tag))
        out.append((time.perf_counter() - due) * 1000)

    await asyncio.gather(*(one(k) for k in range(samples)))
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
    ap.add_argument("--samples", type=int, default=2000, help="latency samples per workflow, all rounds")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--load", type=float, default=0.5,
                    help="steady load for the latency figures, as a share of the lead's saturated rate")
    ap.add_argument("--open", type=int, default=10_000)
    ap.add_argument("--no-codec", action="store_true",
                    help="leadflow without payload encryption (to measure what the codec costs)")
    args = parse(ap, {"samples": 600, "rounds": 2, "open": 1000})

    port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"), port=port, ui=False,
        search_attributes=search.ALL, data_converter=pydantic_data_converter,
        dev_server_log_level="error")
    home = tempfile.mkdtemp(prefix="leadflow-e2e-")
    # leadflow as it runs: its payloads encrypted (codec/); the baselines are bare Temporal
    keys = new_key_line()
    wenv = {**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{port}", "LEADFLOW_HOME": home,
            "LEADFLOW_POLICY_DIR": str(ROOT / "policies"), "LEADFLOW_CODEC_KEYS": keys,
            "LEADFLOW_SECRET": secrets.token_urlsafe(32)}  # required with a TEMPORAL_ADDRESS
    logs = open(Path(home) / "workers.log", "ab")  # noqa: SIM115
    # --no-codec: the same worker with the plain converter leadflow had before encryption
    plain = ("import leadflow.temporal as t; from temporalio.contrib.pydantic import pydantic_data_converter"
             " as p; t.converter = lambda settings: p; import worker; worker.main()")
    command = [sys.executable, "-c", plain] if args.no_codec else [sys.executable, str(ROOT / "worker.py")]
    lead_worker = subprocess.Popen(command, cwd=ROOT, env=wenv,
                                   stdout=logs, stderr=subprocess.STDOUT)
    bare_worker = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bare_worker.py")], cwd=ROOT,
                                   env=wenv, stdout=logs, stderr=subprocess.STDOUT)
    try:
        client = env.client
        sealed = client if args.no_codec else await Client.connect(
            f"127.0.0.1:{port}", data_converter=data_converter(Keyring.parse(keys)))
        lead, bare, floor = Target(sealed, "lead"), Target(client, "bare"), Target(client, "floor")
        latency_targets = (("bare", bare), ("floor", floor), ("lead", lead))
        await asyncio.sleep(2)
        # warm up, then measure in alternating rounds and pool the rounds: the machine's drift
        # and hiccups land on all of them, and a p99 over every sample is steadier than one round's
        await throughput(bare, min(5, args.leads), min(10, args.events), "warm")
        await throughput(lead, min(5, args.leads), min(10, args.events), "warm")
        await saturated(floor, 16, "warm")
        per_round = max(16, args.samples // args.rounds)
        tp: dict[str, list[float]] = {"bare": [], "lead": []}
        sat: dict[str, list[float]] = {name: [] for name, _ in latency_targets}
        lat: dict[str, list[float]] = {name: [] for name, _ in latency_targets}
        capacity: list[float] = []
        for r in range(args.rounds):
            for name, target in (("bare", bare), ("lead", lead)):
                tp[name].append(await throughput(target, args.leads, args.events, f"tp{r}-"))
            for name, target in latency_targets:
                samples, answered_per_s = await saturated(target, per_round, f"sat{r}-")
                sat[name] += samples
                if name == "lead":
                    capacity.append(answered_per_s)
            # the steady load: half what the lead answered a second when saturated (first round)
            rate = args.load * capacity[0]
            for name, target in latency_targets:
                lat[name] += await paced(target, per_round, rate, f"lat{r}-")
            print(f"round {r + 1}: throughput LeadWorkflow {tp['lead'][-1]:,.0f} events/s, "
                  f"bare {tp['bare'][-1]:,.0f} events/s")
        # events/s over all rounds: total events over total time
        lead_tp = len(tp["lead"]) / sum(1 / x for x in tp["lead"])
        bare_tp = len(tp["bare"]) / sum(1 / x for x in tp["bare"])
        print(f"throughput: LeadWorkflow {lead_tp:,.0f} events/s, bare {bare_tp:,.0f} events/s")
        figures: dict[str, float] = {"load_events_per_s": round(rate, 1)}
        for mode, pooled in (("", lat), ("saturated_", sat)):
            for name, _ in latency_targets:
                prefix = "" if name == "lead" else f"{name}_"
                for p in (50, 99):
                    figures[f"{prefix}{mode}p{p}_ms"] = round(pct(pooled[name], p), 2)
        figures["latency_samples"] = len(lat["lead"])
        print(f"event-to-state latency at a steady {rate:.0f} events/s: LeadWorkflow "
              f"p50 {figures['p50_ms']} ms p99 {figures['p99_ms']} ms; bare p50 {figures['bare_p50_ms']} ms "
              f"p99 {figures['bare_p99_ms']} ms; one local activity p50 {figures['floor_p50_ms']} ms "
              f"p99 {figures['floor_p99_ms']} ms")
        print(f"saturated (8 leads, each sending on its last answer): LeadWorkflow "
              f"p50 {figures['saturated_p50_ms']} ms p99 {figures['saturated_p99_ms']} ms; bare "
              f"p50 {figures['bare_saturated_p50_ms']} ms p99 {figures['bare_saturated_p99_ms']} ms; "
              f"one local activity p50 {figures['floor_saturated_p50_ms']} ms "
              f"p99 {figures['floor_saturated_p99_ms']} ms")
        rss = {}
        opened = 0
        for target in sorted({min(1000, args.open), min(args.open, 5000), args.open}):
            await open_leads(lead, target, opened)
            opened = target
            await asyncio.sleep(1)
            rss[target] = rss_mb(lead_worker.pid)
            print(f"worker RSS with {target:,} open leads: {rss[target]:.1f} MB")
        result = {
            "bench": "e2e", "events_per_s": round(lead_tp, 1), "bare_events_per_s": round(bare_tp, 1),
            "throughput_ratio": round(lead_tp / bare_tp, 3), **figures,
            "p99_ratio": round(figures["p99_ms"] / figures["bare_p99_ms"], 3),
            "floor_p99_ratio": round(figures["floor_p99_ms"] / figures["bare_p99_ms"], 3),
            "saturated_p99_ratio": round(figures["saturated_p99_ms"] / figures["bare_saturated_p99_ms"], 3),
            "floor_saturated_p99_ratio": round(
                figures["floor_saturated_p99_ms"] / figures["bare_saturated_p99_ms"], 3),
            "rss_mb_1000_leads": round(rss[1000], 1) if 1000 in rss else None,  # --open < 1000: none
            "rss_mb_open_leads": round(rss[args.open], 1),
            "open_leads": args.open,
        }
    finally:
        for p in (lead_worker, bare_worker):
            p.kill()
            p.wait()
        logs.close()
        await env.shutdown()
    # after the server is gone: what it says while it stops (it writes to this process's output)
    # must not come after the last line, the figures
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
    # The figures are out; skip interpreter finalization, where the Temporal runtime's threads
    # now and then abort the process (PyGILState_Release) after the JSON line
    sys.stdout.flush()
    os._exit(0)
