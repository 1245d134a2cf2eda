"""Bounded cost per lead: a lead in one of its policy's final states (converted, disqualified)
completes its workflow after LEADFLOW_FINAL_RETENTION, and a later event for the same address
starts a new run that knows how the earlier one ended. On the time-skipping server."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio.client import WorkflowExecutionStatus

from leadflow.archive.endings import Endings
from rules.identity import lead_key
from rules.models import LeadRef
from tests.support.stack import Stack
from tests.support.stack import until as _until
from tests.support.temporal_harness import harness
from workflows.types import LeadOptions


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_an_ended_lead_completes_at_once_and_its_next_run_knows_how_it_ended(tmp_path):
    async def scenario():
        async with harness(tmp_path, final_retention=0.0) as h:
            email = "eve@rivalcrm.example"  # a competitor: disqualified at sign-up
            first = await h.signup(email, role="vp")
            ending = await first.result()
            assert ending["state"] == "disqualified" and ending["rule"] == "competitor"
            assert ending["why"] == "works for a competitor" and ending["events"] == 1
            assert ending["story"][-1]["to_state"] == "disqualified"
            assert (await first.describe()).status == WorkflowExecutionStatus.COMPLETED
            key = lead_key(LeadRef(email=email))
            (kept,) = Endings(h.delivery.ledger).of(key)
            assert kept.state == "disqualified" and kept.run_id == first.result_run_id

            # weeks later the address comes back with a page view: a new run of the same workflow id
            # (the intake's path to it is tested through the API below)
            await h.env.sleep(timedelta(days=20))
            back = {"id": "back-1", "type": "page_view", "lead": {"email": email},
                    "data": {"page": "/pricing"}}
            await h.client.start_workflow("LeadWorkflow", args=[back, LeadOptions(index=False)], id=key,
                                          task_queue=h.settings.task_queue, start_signal="event",
                                          start_signal_args=[back])
            second = h.client.get_workflow_handle(key)
            for _ in range(200):
                st = await second.query("state")
                if st["events"] >= 1:
                    break
                await asyncio.sleep(0.05)
            (earlier,) = st["earlier"]
            assert earlier["state"] == "disqualified" and earlier["why"] == "works for a competitor"
            assert earlier["run_id"] == first.result_run_id
            assert _at(st["story"][0]["at"]) - _at(earlier["since"]) >= timedelta(days=20)
            assert st["story"][0]["event_type"] == "earlier" and "disqualified" in st["story"][0]["why"]
            # the new run is a lead of its own; the policy disqualifies it again, and it ends again
            assert st["state"] == "disqualified" and st["runs"] == 1
            again = await second.result()
            assert again["state"] == "disqualified"
            assert [e.run_id for e in Endings(h.delivery.ledger).of(key)] == [
                first.result_run_id, (await second.describe()).run_id]

            await h.replay("ended-and-back", first)
    asyncio.run(scenario())


def test_a_converted_lead_keeps_its_run_for_the_retention_then_completes(tmp_path):
    async def scenario():
        async with harness(tmp_path, final_retention=30 * 86400.0) as h:
            lead, _, task = await h.hot_lead_with_task("kim@acme.example")
            assert (await h.state(lead))["ends_at"] is None  # sales-ready is not final
            await task.execute_update("accept", {"by": "sam"})
            for _ in range(200):
                st = await h.state(lead)
                if st["state"] == "converted":
                    break
                await asyncio.sleep(0.05)
            assert _at(st["ends_at"]) - _at(st["final_since"]) == timedelta(days=30)
            await h.env.sleep(timedelta(days=29))
            assert (await lead.describe()).status == WorkflowExecutionStatus.RUNNING
            # an event during the retention is taken by the same run
            await lead.signal("event", {"id": "late-view", "type": "page_view", "data": {"page": "/docs"}})
            await h.env.sleep(timedelta(days=2))
            ending = await lead.result()
            assert ending["state"] == "converted" and ending["why"] == "sales accepted the lead"
            assert ending["events"] == (await h.state(lead))["events"] >= 3
            await h.replay("converted-retention", lead)
    asyncio.run(scenario())


def test_the_intake_starts_the_next_run_of_an_ended_lead(tmp_path, shared_server):
    with Stack(tmp_path, queue="ending", server=shared_server, final_retention=0.0) as stack:
        intake, sales = stack.http("admin"), stack.http("sales")  # admin: ?wait=true reads the lead
        email = "max@mailinator.com"  # a disposable address: disqualified at sign-up, ended at once
        signup = intake.post("/v1/events?wait=true", json={"type": "signup", "lead": {"email": email}})
        assert signup.json()["decision"]["state"] == "disqualified"
        key = signup.json()["results"][0]["lead_id"]
        handle = stack.client.get_workflow_handle(key)
        first_run = stack.run(handle.describe()).run_id
        assert _until(lambda: stack.run(handle.describe()).status == WorkflowExecutionStatus.COMPLETED)
        # a later event is taken, not refused as a lead without a sign-up, and starts the next run
        sent = intake.post("/v1/events", json={"type": "page_view", "lead": {"email": email}})
        assert sent.json()["results"][0]["status"] == "accepted", sent.text
        lead = _until(lambda: (view := sales.get(f"/v1/leads/{email}").json()).get("earlier") and view)
        assert lead["earlier"][0]["state"] == "disqualified"
        assert lead["earlier"][0]["why"] == "disposable e-mail domain"
        # with ?wait=true (the submit update) as well, once that run has ended too
        assert _until(lambda: (run := stack.run(handle.describe())).run_id != first_run
                      and run.status == WorkflowExecutionStatus.COMPLETED)
        late = intake.post("/v1/events?wait=true", json={"type": "email_open", "lead": {"email": email}})
        assert late.status_code == 200, late.text
        assert late.json()["decision"]["state_before"] == "captured"
        # a lead that never existed is still refused
        nobody = intake.post("/v1/events?wait=true",
                             json={"type": "email_open", "lead": {"email": "no@one.example"}})
        assert nobody.status_code == 422 and "send its sign-up first" in nobody.text
