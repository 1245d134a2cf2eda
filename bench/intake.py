"""Events per second through the HTTP door (POST /v1/events, batches of 100, a realistic mix)
against the same kind of events sent straight with the Temporal client, in the same run; and
p50/p99 of one event with `?wait=true` against the `submit` update sent straight. A dev server,
a worker (worker.py) and the API (`leadflow serve`) run in their own processes on loopback.
Rounds alternate between the two doors; each round sends fresh leads, with the same number of
batches in flight through either door (`--senders`, as a busy form or ads platform would).
Target: the HTTP door at no less than 0.8 of the direct throughput. Last line: one JSON object.

    .venv/bin/python bench/intake.py [--rounds 4] [--batches 10] [--samples 300] [--senders 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from temporalio.client import Client  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from bench.quick import parse  # noqa: E402
from leadflow.codec.aesgcm import data_converter  # noqa: E402
from leadflow.codec.keys import Keyring, new_key_line  # noqa: E402
from leadflow.intake import deliver  # noqa: E402
from leadflow.operations.leads import lead_id  # noqa: E402
from leadflow.settings import Settings  # noqa: E402
from leadflow.temporal import binary  # noqa: E402
from workflows import search  # noqa: E402
from workflows.lead import LeadWorkflow  # noqa: E402

BATCH = 100
KEY = "intake-bench-key-0123456789"
# ?wait=true answers with the lead's Decision: a key that also reads leads (admin) sends those
WAIT_KEY = "admin-bench-key-0123456789"
BEHAVIOUR = [("page_view", {"path": "/blog/a"}, 4), ("page_view", {"path": "/pricing"}, 2),
             ("email_open", {}, 4), ("email_click", {}, 2), ("content_download", {}, 1),
             ("webinar_attended", {}, 1)]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def running(api_keys: str, **more: str) -> AsyncIterator[tuple[Client, str]]:
    """A dev server, a worker (worker.py) and the API (`leadflow serve`) in processes of their own
    on loopback, with the API keys given and `more` LEADFLOW_* settings (by their names without
    the prefix); yields a Temporal client on the same codec key and the API's base URL, ready."""
    home = Path(tempfile.mkdtemp(prefix="leadflow-bench-"))
    port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"), port=port, ui=False, search_attributes=search.ALL,
        data_converter=pydantic_data_converter, dev_server_log_level="error")
    http_at = f"127.0.0.1:{free_port()}"
    # leadflow's payloads are encrypted (codec/): the worker, the API and the direct door's client
    # share one key, so both doors pay for the codec alike
    keys = new_key_line()
    environ = {**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{port}", "LEADFLOW_HOME": str(home),
               "LEADFLOW_HTTP": http_at, "LEADFLOW_API_KEYS": api_keys, "LEADFLOW_CODEC_KEYS": keys,
               "LEADFLOW_SECRET": secrets.token_urlsafe(32),  # required with a TEMPORAL_ADDRESS
               **{f"LEADFLOW_{k.upper()}": v for k, v in more.items()}}
    logs = open(home / "processes.log", "ab")  # noqa: SIM115  # the worker's and the API's output
    procs = [subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=environ,
                              stdout=logs, stderr=subprocess.STDOUT),
             subprocess.Popen([sys.executable, "-m", "leadflow", "serve"], cwd=ROOT, env=environ,
                              stdout=logs, stderr=subprocess.STDOUT)]
    try:
        client = await Client.connect(f"127.0.0.1:{port}", data_converter=data_converter(Keyring.parse(keys)))
        async with httpx.AsyncClient(base_url=f"http://{http_at}") as probe:
            for _ in range(600):
                try:
                    if (await probe.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        yield client, f"http://{http_at}"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        logs.close()
        await env.shutdown()


def batches(tag: str, count: int, rng: random.Random, pool: list[str]) -> list[list[dict[str, Any]]]:
    """`count` batches of 100: a fifth sign-ups of new leads, the rest behaviour of leads signed
    up before the round (`pool`), as a day's traffic spreads over many leads."""
    out = []
    for b in range(count):
        batch: list[dict[str, Any]] = []
        for i in range(BATCH):
            if i % 5 == 0:
                email = f"{tag}-{b}-{i}@bench.example"
                batch.append({"id": f"{tag}-{b}-{i}", "type": "signup",
                              "lead": {"email": email, "role": rng.choice(["vp", "manager", "director"]),
                                       "company_size": rng.randrange(5, 2000)}})
            else:
                kind, data, _ = rng.choices(BEHAVIOUR, [w for *_, w in BEHAVIOUR])[0]
                batch.append({"id": f"{tag}-{b}-{i}", "type": kind, "lead": {"email": rng.choice(pool)},
                              "data": data})
        out.append(batch)
    return out


async def senders(work: list[list[dict[str, Any]]], count: int, send: Any) -> tuple[int, float]:
    """`count` senders share the batches, each sending its next when the last is answered."""
    start = time.perf_counter()
    queue = list(work)
    accepted = 0

    async def sender() -> None:
        nonlocal accepted
        while queue:
            accepted += await send(queue.pop(0))

    await asyncio.gather(*(sender() for _ in range(count)))
    return accepted, time.perf_counter() - start


def through_http(http: httpx.AsyncClient) -> Any:
    async def send(batch: list[dict[str, Any]]) -> int:
        answer = (await http.post("/v1/events", json=batch)).json()
        return sum(r["status"] == "accepted" for r in answer["results"])
    return send


def straight(client: Client, settings: Settings) -> Any:
    """The same events with the Temporal client: signal-with-start for sign-ups, signals for the
    rest, each lead's events in order and leads side by side (as the HTTP door sends them)."""
    async def send(batch: list[dict[str, Any]]) -> int:
        by_lead: dict[str, list[dict[str, Any]]] = {}
        for event in batch:
            by_lead.setdefault(event["lead"]["email"], []).append(event)

        async def one(events: list[dict[str, Any]]) -> int:
            for event in events:
                await deliver(client, settings, event)
            return len(events)

        return sum(await asyncio.gather(*(one(events) for events in by_lead.values())))
    return send


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--batches", type=int, default=10, help="batches of 100 per round and door")
    ap.add_argument("--samples", type=int, default=300, help="waited events per door")
    ap.add_argument("--senders", type=int, default=4, help="batches in flight, through either door")
    ap.add_argument("--pool", type=int, default=300, help="leads signed up before the rounds")
    args = parse(ap, {"rounds": 2, "batches": 4, "samples": 100})
    rng = random.Random(5)
    settings = Settings(task_queue="leadflow")
    async with running(f"intake:{KEY},admin:{WAIT_KEY}") as (client, base):
        http = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
        pool = [f"pool-{i}@bench.example" for i in range(args.pool)]
        signups = [{"id": f"pool-{i}", "type": "signup", "lead": {"email": e, "role": "manager"}}
                   for i, e in enumerate(pool)]
        for start in range(0, len(signups), BATCH):
            await asyncio.gather(*(deliver(client, settings, e) for e in signups[start:start + BATCH]))
        for email in pool:  # every sign-up evaluated: the worker has no backlog when timing starts
            handle = client.get_workflow_handle_for(LeadWorkflow.run, lead_id(email))
            while (await handle.query(LeadWorkflow.state)).events < 1:
                await asyncio.sleep(0.1)
        waited: dict[str, list[float]] = {"http": [], "direct": []}
        people = pool[:50]
        for n in range(args.samples):
            email = people[n % len(people)]
            event = {"id": f"w{n}", "type": "email_open", "lead": {"email": email}}
            start = time.perf_counter()
            if n % 2 == 0:
                answer = await http.post("/v1/events?wait=true", json=event,
                                         headers={"Authorization": f"Bearer {WAIT_KEY}"})
                assert answer.json()["decision"], answer.text
                waited["http"].append(time.perf_counter() - start)
            else:
                handle = client.get_workflow_handle_for(LeadWorkflow.run, lead_id(email))
                await handle.execute_update(LeadWorkflow.submit, {**event, "id": f"w{n}"})
                waited["direct"].append(time.perf_counter() - start)
        doors = {"http": through_http(http), "direct": straight(client, settings)}
        for door, send in doors.items():  # warm both doors (and the worker) up
            await senders(batches(f"warm-{door}", 2, rng, pool), args.senders, send)
        totals = {"http": [0, 0.0], "direct": [0, 0.0]}
        for r in range(args.rounds):
            for door in (["http", "direct"] if r % 2 == 0 else ["direct", "http"]):
                work = batches(f"{door}{r}", args.batches, rng, pool)
                done, took = await senders(work, args.senders, doors[door])
                totals[door][0] += done
                totals[door][1] += took
                print(f"round {r + 1}: {door:<6} {done / took:8.1f} events/s")
        rates = {door: done / took for door, (done, took) in totals.items()}

        figures = {door: (statistics.median(v) * 1000, percentile(v, 99) * 1000)
                   for door, v in waited.items()}
        print(f"throughput: HTTP {rates['http']:.1f} events/s, direct {rates['direct']:.1f} events/s "
              f"({rates['http'] / rates['direct']:.2f})")
        print(f"one event, waited for: HTTP p50 {figures['http'][0]:.1f} ms p99 {figures['http'][1]:.1f} ms; "
              f"submit p50 {figures['direct'][0]:.1f} ms p99 {figures['direct'][1]:.1f} ms")
        result = {
            "bench": "intake", "http_events_per_s": round(rates["http"], 1),
            "direct_events_per_s": round(rates["direct"], 1),
            "throughput_ratio": round(rates["http"] / rates["direct"], 3),
            "target_met": rates["http"] / rates["direct"] >= 0.8,
            "wait_http_p50_ms": round(figures["http"][0], 2),
            "wait_http_p99_ms": round(figures["http"][1], 2),
            "submit_p50_ms": round(figures["direct"][0], 2), "submit_p99_ms": round(figures["direct"][1], 2),
            "events": int(totals["http"][0] + totals["direct"][0]), "batch": BATCH, "senders": args.senders,
            "samples": args.samples}
        await http.aclose()
    # after the server is gone: what it says while it stops (it writes to this process's output)
    # must not come after the last line, the figures
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)  # the Temporal client's threads may abort interpreter shutdown (sdk-python#300)
