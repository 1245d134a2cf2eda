"""The event archive: every event a lead took, from any door and from before any
continue-as-new, kept once in the shared database and exported by `leadflow events export` in
the order the lead took it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from rules.identity import lead_key
from rules.models import LeadRef
from tests.support.temporal_harness import ROOT, api, free_port, harness
from workflows.types import LeadOptions

KEY = "intake-key-0123456789abcdef"


def export(home: Path, *args: str) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "leadflow", "events", "export", *args], cwd=ROOT,
                          env={**os.environ, "LEADFLOW_HOME": str(home)}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


async def state(lead) -> dict:
    """The lead's state; a query that meets the lead between runs (it continues as new every
    four events here) may time out, and is asked again."""
    from temporalio.service import RPCError

    for _ in range(5):
        try:
            return await lead.query("state", rpc_timeout=timedelta(seconds=10))
        except RPCError:
            await asyncio.sleep(0.2)
    return await lead.query("state")


def test_every_event_a_lead_took_is_archived_once_and_exported_in_order(tmp_path):
    async def scenario():
        import httpx

        settings = {"api_keys": f"intake:{KEY}", "http": f"127.0.0.1:{free_port()}"}
        async with harness(tmp_path, **settings) as h, api(h) as base:
            lead = await h.signup("arc@acme.example", LeadOptions(index=False, max_events_per_run=4),
                                  role="director", budget=20000, company_size=80)
            lead_id = lead.id
            # through the workflow's own door, with a repeat it drops
            for i in range(6):
                await lead.signal("event", {"id": f"v{i}", "type": "page_view",
                                            "at": f"2026-03-0{i + 1}T10:00:00Z", "data": {"path": f"/p{i}"}})
            await lead.signal("event", {"id": "v2", "type": "page_view", "data": {"path": "/again"}})
            # through the HTTP API
            async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {KEY}"}) as web:
                answer = await web.post("/v1/events", json=[
                    {"id": "demo", "type": "demo_request", "lead": {"email": "arc@acme.example"}}])
                assert answer.status_code == 200, answer.text
            for _ in range(200):
                st = await state(lead)
                if st["events"] >= 8 and st["open_handoff"]:
                    break
                await asyncio.sleep(0.05)
            assert st["runs"] >= 1, "the lead continued as new on the way"
            assert st["state"] == "sales-ready" and st["open_handoff"], st
            # a sales answer reaches the lead from its hand-off: an event like the others
            task = h.client.get_workflow_handle(st["open_handoff"])
            await task.execute_update("reject", {"reason": "no budget until Q3", "by": "sam"})
            for _ in range(200):
                if (await state(lead))["events"] >= 9:
                    break
                await asyncio.sleep(0.05)
            # another lead, so the export has to pick
            await h.signup("other@acme.example", role="student")
        return lead_id, st["open_handoff"]

    lead_id, task_id = asyncio.run(scenario())
    everything = export(tmp_path)
    mine = [e for e in everything if e["lead_id"] == lead_id]
    ids = ["signup-arc@acme.example", "v0", "v1", "v2", "v3", "v4", "v5", "demo", f"{task_id}:rejected"]
    assert [e["id"] for e in mine] == ids
    other = lead_key(LeadRef(email="other@acme.example"))
    assert [e["lead_id"] for e in everything] == [lead_id] * 9 + [other]
    answer = mine[-1]
    assert answer["type"] == "sales_reject" and answer["data"]["reason"] == "no budget until Q3"
    signup = mine[0]
    assert signup["type"] == "signup" and signup["lead"]["email"] == "arc@acme.example"
    assert signup["lead"]["company_size"] == 80 and signup["at"]  # when it counted, though sent without
    assert mine[3]["data"] == {"path": "/p2"} and mine[3]["at"] == "2026-03-03T10:00:00Z"  # the first v2

    # the filters: one lead by its e-mail; a window of event time
    assert [e["id"] for e in export(tmp_path, "--lead", "arc@acme.example")] == ids
    window = export(tmp_path, "--since", "2026-03-02", "--until", "2026-03-04T10:00:00Z", "--lead", lead_id)
    assert [e["id"] for e in window] == ["v1", "v2"]
    bad = subprocess.run([sys.executable, "-m", "leadflow", "events", "export", "--since", "last tuesday"],
                         cwd=ROOT, env={**os.environ, "LEADFLOW_HOME": str(tmp_path)}, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 1 and "--since: 'last tuesday' is not an ISO time" in bad.stderr
