"""Chaos, bounded and on loopback only: generated leads sent through the API while worker and
Temporal server processes are killed with SIGKILL and started again; then every lead is checked
against `policy simulate` of the events the archive kept, and every side effect is counted.

    .venv/bin/python chaos/run.py [--leads 1000] [--worker-kills 10] [--server-kills 2] [--seed 7]

The whole service runs as it does in production, each part a process of its own: a Temporal dev
server keeping its state in a SQLite file (killed and started again on the same file), two
workers (LEADFLOW_EVAL_PROCESSES=1 each) sharing the codec keys and the delivery ledger on
PostgreSQL (pgserver), the API (`leadflow serve`), a local SMTP server and a webhook receiver for
the CRM. Events carry no time of their own (they count when they arrive, as a live form's do),
and nothing in a generated lead's first weeks is due within the run, so the simulation of the
archived events is what the leads must show. Sales answers are left out (the inbox's path is
tested elsewhere); hand-offs are opened and sent to the CRM.

Counted: leads, kills, restarts, lost (events the API accepted that no lead took), duplicated
(a hand-off task opened twice, or an e-mail or webhook that arrived twice outside the documented
window: a claim taken over from a killed worker, `reclaims` in the ledger), mismatched (a lead
whose state differs from the simulation's), and recovery (seconds from a kill until the archive
grew again). Last line: one JSON object."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from temporalio.client import Client  # noqa: E402

from leadflow.archive.events import EventArchive  # noqa: E402
from leadflow.codec.keys import new_key_line  # noqa: E402
from leadflow.db.database import Database  # noqa: E402
from leadflow.db.schema import events  # noqa: E402
from leadflow.intake import list_workflows  # noqa: E402
from leadflow.replay.generate import generate  # noqa: E402
from leadflow.replay.simulate import simulate_lead  # noqa: E402
from leadflow.settings import Settings  # noqa: E402
from leadflow.temporal import binary, converter  # noqa: E402
from rules.compile import load_compiled  # noqa: E402
from tests.support import pg  # noqa: E402
from tests.support.wire import Receiver, SmtpCatcher  # noqa: E402
from workflows import search  # noqa: E402
from workflows.lead import LeadWorkflow  # noqa: E402

SKIPPED = ("sales_accept", "sales_reject", "sla_breach", "check")
INTAKE_KEY, OPS_KEY = "chaos-intake-key-0123456789", "chaos-ops-key-0123456789ab"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Parts:
    """The processes of the service, each started again after a kill."""

    def __init__(self, home: Path, env: dict[str, str], port: int, log: Any) -> None:
        self.home, self.env, self.port, self.log = home, env, port, log
        self.server: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes] | None] = [None, None]
        self.api: subprocess.Popen[bytes] | None = None

    def start_server(self) -> None:
        attributes = [arg for key in search.ALL for arg in (
            "--search-attribute", f"{key.name}={'Double' if key.name == 'LeadflowScore' else 'Keyword'}")]
        self.server = subprocess.Popen(
            [binary("temporal"), "server", "start-dev", "--headless", "--port", str(self.port),
             "--db-filename", str(self.home / "temporal.db"), "--log-level", "error", *attributes],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError("the Temporal dev server did not start")

    def start_worker(self, n: int) -> None:
        env = {**self.env, "LEADFLOW_HOME": str(self.home / f"worker{n}")}
        self.workers[n] = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=env,
                                           stdout=self.log, stderr=subprocess.STDOUT)

    def start_api(self) -> None:
        env = {**self.env, "LEADFLOW_HOME": str(self.home / "api")}
        self.api = subprocess.Popen([sys.executable, "-m", "leadflow", "serve"], cwd=ROOT, env=env,
                                    stdout=self.log, stderr=subprocess.STDOUT)

    @staticmethod
    def kill(process: subprocess.Popen[bytes] | None) -> None:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        for p in (*self.workers, self.api):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    self.kill(p)
        self.kill(self.server)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=1000)
    ap.add_argument("--days", type=float, default=21, help="of generated history per lead, sent at once")
    ap.add_argument("--worker-kills", type=int, default=10)
    ap.add_argument("--server-kills", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--settle", type=float, default=300, help="seconds to wait for leads to catch up")
    args = ap.parse_args()
    print(json.dumps(await chaos(args.leads, args.days, args.worker_kills, args.server_kills, args.seed,
                                 args.settle)))


async def chaos(leads: int, days: float, worker_kills: int, server_kills: int, seed: int,
                settle: float = 300) -> dict[str, Any]:
    rng = random.Random(seed)
    home = Path(tempfile.mkdtemp(prefix="leadflow-chaos-"))
    port, http_port = free_port(), free_port()
    shared_db_url = pg.new_database()
    smtp, crm = SmtpCatcher().__enter__(), Receiver().__enter__()
    env = {**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{port}", "TEMPORAL_NAMESPACE": "default",
           "LEADFLOW_POLICY_DIR": str(ROOT / "policies"), "LEADFLOW_EVAL_PROCESSES": "1",
           "LEADFLOW_DATABASE_URL": shared_db_url, "LEADFLOW_CODEC_KEYS": new_key_line(),
           "LEADFLOW_SMTP_HOST": "127.0.0.1", "LEADFLOW_SMTP_PORT": str(smtp.port),
           "LEADFLOW_HANDOFF_WEBHOOK_URL": f"{crm.url}/hooks",
           "LEADFLOW_WEBHOOK_SECRET": "chaos-webhook-secret",
           "LEADFLOW_SECRET": "chaos-link-secret-0123456789abcdef", "LEADFLOW_HTTP": f"127.0.0.1:{http_port}",
           "LEADFLOW_API_KEYS": f"intake:{INTAKE_KEY},ops:{OPS_KEY}", "LEADFLOW_POLICY_POLL_SECONDS": "2"}
    for name in ("TEMPORAL_API_KEY", "TEMPORAL_PROFILE", "TEMPORAL_CONFIG_FILE"):
        env.pop(name, None)
    log = open(home / "chaos.log", "ab")  # noqa: SIM115 (outlives every process it logs)
    parts = Parts(home, env, port, log)
    ledger = Database.open(shared_db_url)
    archive = EventArchive(ledger)
    try:
        parts.start_server()
        parts.start_worker(0)
        parts.start_worker(1)
        parts.start_api()
        history: dict[str, list[dict[str, Any]]] = {}
        for raw in generate(leads, days, seed):
            if raw["type"] not in SKIPPED:
                history.setdefault(raw["lead_id"], []).append(
                    {k: v for k, v in raw.items() if k not in ("lead_id", "at")})
        total = sum(map(len, history.values()))
        # kills at random moments of the stream (by events sent), workers and the server
        moments = sorted(rng.sample(range(total // 20, total), worker_kills + server_kills))
        kinds = ["worker"] * worker_kills + ["server"] * server_kills
        rng.shuffle(kinds)
        plan = list(zip(moments, kinds, strict=True))
        accepted: dict[str, set[str]] = {}  # lead id -> event ids the API accepted
        recoveries: list[float] = []
        sent = 0
        kills = restarts = 0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=60,
                                     headers={"Authorization": f"Bearer {INTAKE_KEY}"}) as api:
            await _until_ready(api)

            async def send(event: dict[str, Any]) -> None:
                nonlocal sent
                for attempt in range(200):  # the same event again is a duplicate, never a second event
                    try:
                        answer = await api.post("/v1/events", json=event)
                    except httpx.HTTPError:
                        answer = None
                    if answer is not None and answer.status_code < 500:
                        row = answer.json()["results"][0]
                        if row["status"] in ("accepted", "duplicate"):
                            accepted.setdefault(row["lead_id"], set()).add(row["event_id"])
                            sent += 1
                            return
                        if "send its sign-up first" not in str(row.get("error")):
                            raise RuntimeError(f"refused: {row}")
                    await asyncio.sleep(min(5.0, 0.2 * (attempt + 1)))
                raise RuntimeError(f"never accepted: {event}")

            async def lead(events: list[dict[str, Any]], gate: asyncio.Semaphore) -> None:
                async with gate:
                    for i, event in enumerate(events):
                        await send({**event, "id": event.get("id") or f"e{i}"})

            async def chaos_monkey() -> None:
                nonlocal kills, restarts
                for moment, kind in plan:
                    while sent < moment:
                        await asyncio.sleep(0.05)
                    before = archive_count(ledger)
                    if kind == "worker":
                        n = kills % 2
                        parts.kill(parts.workers[n])
                        kills += 1
                        await asyncio.sleep(rng.uniform(0.2, 2))
                        parts.start_worker(n)
                    else:
                        parts.kill(parts.server)
                        kills += 1
                        await asyncio.sleep(rng.uniform(0.5, 2))
                        await asyncio.to_thread(parts.start_server)
                    restarts += 1
                    began = time.monotonic()
                    while archive_count(ledger) <= before and time.monotonic() - began < 300:
                        await asyncio.sleep(0.2)
                    recoveries.append(time.monotonic() - began)

            gate = asyncio.Semaphore(32)
            monkey = asyncio.create_task(chaos_monkey())
            await asyncio.gather(*(lead(events, gate) for events in history.values()))
            await monkey

        # every accepted event taken by its lead (the archive holds what evaluations took)
        want = sum(map(len, accepted.values()))
        deadline = time.monotonic() + settle
        while archive_count(ledger) < want and time.monotonic() < deadline:
            await asyncio.sleep(1)
        taken: dict[str, list[dict[str, Any]]] = {}
        for row in archive.export():
            taken.setdefault(row["lead_id"], []).append(row)
        lost = sum(len(ids - {e["id"] for e in taken.get(lead_id, [])}) for lead_id, ids in accepted.items())

        client = await Client.connect(f"127.0.0.1:{port}", data_converter=converter(Settings.from_env(env)))
        policy = load_compiled(str(ROOT / "policies" / "lead-lifecycle.v1.yaml"))
        await asyncio.sleep(5)  # the last deliveries of the last evaluations
        mismatched: list[tuple[str, str | None, str | None]] = []
        handoffs: dict[str, int] = {}
        until = None
        for lead_id, raws in taken.items():
            live = await client.get_workflow_handle_for(LeadWorkflow.run, lead_id).query(LeadWorkflow.state)
            if until is None:
                until = datetime.now(timezone.utc)
            sim = simulate_lead(policy, lead_id, raws, until)
            handoffs[lead_id] = len(sim.handoffs)
            if live.state != sim.state:
                mismatched.append((lead_id, live.state, sim.state))
        tasks = await list_workflows(client, "WorkflowType = 'HandoffWorkflow'", limit=100_000)
        per_lead = Counter(t["id"].rsplit("-", 1)[0].removeprefix("handoff-") for t in tasks)
        tasks_twice = sum(max(0, n - handoffs.get(lead_id, 0)) for lead_id, n in per_lead.items())
        reclaimed = {r["message_id"] for r in ledger.list(limit=1_000_000) if r["reclaims"] > 0}
        mail_twice = {k for k, n in smtp.ids().items() if n > 1}
        hooks = Counter(r.headers["Idempotency-Key"] for r in crm.taken())
        hooks_twice = {k for k, n in hooks.items() if n > 1}
        duplicated = tasks_twice + len(mail_twice - reclaimed) + len(hooks_twice - reclaimed)
        figures = {"chaos": "leadflow", "leads": len(history), "events": want, "kills": kills,
                   "restarts": restarts, "lost": lost, "duplicated": duplicated,
                   "mismatched": len(mismatched),
                   "within_window": len((mail_twice | hooks_twice) & reclaimed),
                   "emails": len(smtp.messages), "webhooks": len(crm.taken()), "handoffs": len(tasks),
                   "recovery_median_s": round(statistics.median(recoveries), 1) if recoveries else None,
                   "recovery_max_s": round(max(recoveries), 1) if recoveries else None,
                   "mismatch_examples": mismatched[:5]}
        print(f"leads {figures['leads']}, events {want}, kills {kills}, restarts {restarts}: lost {lost}, "
              f"duplicated {duplicated}, mismatched {len(mismatched)} (e-mails or webhooks twice within "
              f"the documented window: {figures['within_window']}); recovery median "
              f"{figures['recovery_median_s']} s, max {figures['recovery_max_s']} s", flush=True)
        return figures
    finally:
        parts.stop()
        ledger.close()
        smtp.__exit__()
        crm.__exit__()
        log.close()


def archive_count(ledger: Database) -> int:
    with ledger.engine.connect() as db:
        return int(db.execute(select(func.count()).select_from(events)).scalar_one())


async def _until_ready(api: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if (await api.get("/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError("the API never became ready")


if __name__ == "__main__":
    asyncio.run(main())
