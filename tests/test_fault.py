"""Kill -9 the worker while 200 leads arrive, on the real dev server (not time-skipping):
every lead still reaches its state, and no hand-off or outbox message exists twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.outbox import Outbox
from service.intake import list_workflows, send
from service.settings import Settings
from service.temporal import binary
from tests.temporal_harness import ROOT, free_port
from workflows import search

PERSONAS = {
    "hot": ({"role": "vp", "budget": 60000, "timeline": "now"}, ["demo_request"], "sales-ready"),
    "cold": ({"role": "manager", "company_size": 8}, ["page_view"], "nurturing"),
    "junk": ({"role": "vp"}, [], "disqualified"),
    "quiet": ({"role": "director"}, [], "derailed"),
}


def _start_worker(env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


async def _until_processed(client, lead_id: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if (await client.get_workflow_handle(lead_id).query("state"))["state"]:
                return
        except Exception:  # no worker has answered yet
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{lead_id} was not processed within {seconds}s")


async def _eventually(check, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            await check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def test_kill_9_the_worker_midway(tmp_path):
    async def scenario():
        port = free_port()
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=binary("temporal"), port=port, ui=False,
            search_attributes=search.ALL, data_converter=pydantic_data_converter)
        worker_env = {**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
                      "TEMPORAL_NAMESPACE": "default", "LEADFLOW_HOME": str(tmp_path),
                      "LEADFLOW_TASK_QUEUE": "fault", "LEADFLOW_POLICY_DIR": str(ROOT / "policies")}
        settings = Settings.from_env(worker_env)
        log = open(tmp_path / "worker.log", "ab")  # noqa: SIM115 (outlives two worker processes)
        worker = _start_worker(worker_env, log)
        try:
            client = env.client
            now = datetime.now(timezone.utc)
            kinds = list(PERSONAS)
            expected: dict[str, str] = {}
            for i in range(200):
                kind = kinds[i % 4]
                profile, follow_ups, state = PERSONAS[kind]
                domain = "mailinator.com" if kind == "junk" else "acme.example"
                email = f"{kind}{i}@{domain}"
                at = (now - timedelta(days=40)).isoformat() if kind == "quiet" else now.isoformat()
                out = await send(client, settings, {"id": f"s{i}", "type": "signup", "at": at,
                                                    "lead": {"email": email, **profile}})
                for j, follow in enumerate(follow_ups):
                    await send(client, settings, {"id": f"f{i}-{j}", "type": follow,
                                                  "lead": {"email": email}, "data": {"path": "/blog"}})
                expected[out["lead_id"]] = state
                if i == 0:  # the first worker is up and working before anything is killed
                    await _until_processed(client, out["lead_id"])
                if i == 100:
                    worker.send_signal(signal.SIGKILL)
                    worker.wait()
                    await asyncio.sleep(1)
                    worker = _start_worker(worker_env, log)

            deadline = time.monotonic() + 180
            pending = dict(expected)
            while pending and time.monotonic() < deadline:
                for lead_id in list(pending):
                    try:
                        st = await client.get_workflow_handle(lead_id).query(
                            "state", rpc_timeout=timedelta(seconds=10))
                    except Exception:
                        continue
                    if st["state"] == pending[lead_id] and (
                            st["state"] != "sales-ready" or st["open_handoff"]):
                        del pending[lead_id]
                await asyncio.sleep(0.5)
            assert not pending, f"{len(pending)} leads did not arrive: {list(pending.items())[:5]}"

            outbox = Outbox(settings.outbox_path)
            nurtured = [k for k, s in expected.items() if s in ("nurturing", "sales-ready", "derailed")]
            hot = [k for k, s in expected.items() if s == "sales-ready"]

            async def side_effects_hold() -> None:
                messages = outbox.list(limit=100_000)
                assert len({m["key"] for m in messages}) == len(messages)
                welcome = Counter(m["lead"] for m in messages
                                  if m["payload"].get("content") == "welcome-guide")
                assert sorted(welcome) == sorted(nurtured) and set(welcome.values()) == {1}
                handoff_notes = Counter(m["lead"] for m in messages if m["kind"] == "handoff")
                assert sorted(handoff_notes) == sorted(hot) and set(handoff_notes.values()) == {1}
                tasks = await list_workflows(client, "WorkflowType = 'HandoffWorkflow'", limit=1000)
                per_lead = Counter(t["id"].rsplit("-", 1)[0].removeprefix("handoff-") for t in tasks)
                assert sorted(per_lead) == sorted(hot) and set(per_lead.values()) == {1}
                ready = await list_workflows(
                    client, "WorkflowType = 'LeadWorkflow' AND LeadflowState = 'sales-ready'", limit=1000)
                assert sorted(r["id"] for r in ready) == sorted(hot)  # search attributes index leads

            # A lead's state is set before its outbox deliveries finish, and visibility lags:
            # give both a moment, then the same checks must hold.
            await _eventually(side_effects_hold)
            log.flush()
            assert (tmp_path / "worker.log").read_text().count("active policy") == 2  # two workers ran
        finally:
            worker.kill()
            worker.wait()
            log.close()
            await env.shutdown()
    asyncio.run(scenario())
