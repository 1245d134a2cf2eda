"""One lead per person, on the time-skipping server: a personal address that is nurturing and a
work address that asked for a demo are said to be the same person (an `identify` event through
the intake). One sales-ready lead remains, with one hand-off (the work lead's, now answering to
the survivor), both stories in time order, scores from both histories, and the other id's events
reaching it from then on."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from temporalio.service import RPCError

from leadflow import intake
from leadflow.archive.endings import Endings
from leadflow.cli import people
from leadflow.operations import leads
from leadflow.seen import SeenEvents
from tests.support.temporal_harness import Harness, api, free_port, harness

SALES_KEY = "sales-key-for-the-merge-test"
HOT = {"role": "vp", "budget": 60000, "timeline": "now", "company_size": 300}
PERSONAL, WORK = "ana.ruiz@gmail.example", "ana@acme.example"


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def _until(h: Harness, key: str, check: Any, what: str) -> dict[str, Any]:
    for _ in range(300):
        state = await h.client.get_workflow_handle(key).query("state")
        if check(state):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key}: never {what}: {state}")


def test_a_nurturing_personal_lead_and_a_work_lead_that_asked_for_a_demo_merge_into_one(tmp_path: Path):
    async def scenario() -> None:
        async with harness(tmp_path, api_keys=f"sales:{SALES_KEY}", http=f"127.0.0.1:{free_port()}") as h, \
                api(h) as base, httpx.AsyncClient(base_url=base, timeout=30) as page:
            seen = SeenEvents(tmp_path / "intake.sqlite")

            async def send(event: dict[str, Any]) -> str:
                """As `POST /v1/events` takes it: the lead it reached."""
                (result,) = await intake.send_events(h.client, h.settings, h.store, seen, [event])
                assert result.status == "accepted", result
                assert result.lead_id is not None
                return result.lead_id

            personal = await h.signup(PERSONAL, role="manager", first_name="Ana")
            await send({"id": "p-blog", "type": "page_view", "lead": {"email": PERSONAL},
                        "data": {"path": "/blog/lead-scoring"}})
            work = await h.signup(WORK, **HOT)
            await work.execute_update("submit", {"id": "w-demo", "type": "demo_request",
                                                 "lead": {"email": WORK}})
            before = await _until(h, work.id, lambda s: s["open_handoff"], "a hand-off")
            task = before["open_handoff"]
            mine = await _until(h, personal.id, lambda s: s["events"] == 2, "its page view")
            assert mine["state"] == "nurturing" and mine["scores"]["intent"] == 0
            await h.env.sleep(timedelta(days=1))

            # a salesperson on the personal lead's page says it is also the work address: the
            # pages send the `identify` event through the intake
            cutoff = time.time()  # the ledger's clock, not the workflows' (which skips)
            login = (await page.get("/login")).text
            await page.post("/login", data={"key": SALES_KEY, "csrf": _csrf(login), "next": "/inbox"})
            shown = (await page.get(f"/leads/{personal.id}")).text
            identify = f"/leads/{personal.id}/identify"
            bad = await page.post(identify, data={"csrf": _csrf(shown), "same_as": "x@"})
            assert bad.status_code == 422 and "data.same_as.email: not an e-mail address" in bad.text
            said = await page.post(identify, data={"csrf": _csrf(shown), "same_as": WORK})
            assert said.status_code == 303 and said.headers["location"] == f"/leads/{personal.id}"
            merged = await _until(h, personal.id, lambda s: s["aliases"], "merged")
            shown = (await page.get(f"/leads/{WORK}")).text  # the other address shows the one lead
            assert personal.id in shown and f"also known as\n  <b>{WORK}</b> ({work.id}" in shown
            assert merged["state"] == "sales-ready" and merged["open_handoff"] == task
            assert merged["scores"]["intent"] >= 25 and merged["scores"]["fit"] >= 50  # from both
            assert merged["profile"]["email"] == PERSONAL and merged["profile"]["role"] == "vp"
            assert merged["aliases"][0]["email"] == WORK and merged["aliases"][0]["lead_id"] == work.id
            whys = [s["why"] or "" for s in merged["story"]]
            assert any(f"hand-off {task} opened" in why for why in whys)  # the work lead's story
            ids = {s["event_id"] for s in merged["story"]}
            assert {f"signup-{PERSONAL}", f"signup-{WORK}", "w-demo"} <= ids  # both leads' lines
            assert any(f"merged with {WORK}" in why for why in whys)
            assert [s["at"] for s in merged["story"]] == sorted(s["at"] for s in merged["story"])
            assert merged["events"] >= 4  # both leads' events

            # `leadflow lead` by either address reads the one lead and shows both ids
            shown = await leads.lead(h.client, WORK, intake.aliases_for(h.settings))
            assert shown is not None and shown["lead_id"] == personal.id
            console = Console(record=True, width=200)
            console.print(people.lead(shown))
            assert f"also     {WORK} ({work.id})" in console.export_text()

            # the other lead has ended, pointing here; its hand-off answers to the survivor
            for _ in range(200):  # not result(): waiting on it lets the test server skip time
                if (await work.describe()).status.name == "COMPLETED":
                    break
                await asyncio.sleep(0.05)
            (ending,) = Endings(h.delivery.ledger).of(work.id)  # its result, kept for its next run
            assert ending.state == "merged" and ending.merged_into == personal.id
            info = await h.client.get_workflow_handle(task).query("task")
            assert info["status"] == "open" and info["lead_workflow_id"] == personal.id, info["log"]
            assert [e["what"] for e in info["log"]][-1] == "relinked"
            with pytest.raises(RPCError):  # the survivor opened none of its own: one hand-off in all
                await h.client.get_workflow_handle(f"handoff-{personal.id}-1").describe()

            # later events for either address reach the survivor; the work id never restarts
            assert await send({"id": "w-pricing", "type": "page_view", "lead": {"email": WORK},
                               "data": {"path": "/pricing"}}) == personal.id
            paged = await _until(h, personal.id, lambda s: s["events"] == merged["events"] + 1,
                                 "the work address's page view")
            assert (await h.client.get_workflow_handle(work.id).describe()).status.name == "COMPLETED"

            # tracks reconciled: the personal lead's awareness track would have sent case-study and
            # roi-calculator this week; the person is sales-ready, so nothing more is sent, and
            # nothing either address had is sent again (this first: the test server stops
            # skipping time once a task whose first lead has ended completes)
            assert mine["track"]["name"] == "awareness" and merged["track"] is None
            await h.env.sleep(timedelta(days=8))
            await _until(h, personal.id, lambda s: s["events"] > paged["events"], "a week of checks")
            rows = [row for lead in (personal.id, work.id)
                    for row in h.delivery.ledger.list(lead=lead, kind="email")]
            had = [row["subject"] for row in rows if row["created_at"] < cutoff]
            later = [row["subject"] for row in rows if row["created_at"] >= cutoff]
            assert had == ["welcome-guide", "welcome-guide"] and later == [], (had, later)

            # the work lead's task, passed on at its SLA breaches meanwhile, converts the survivor
            await h.client.get_workflow_handle(task).execute_update("accept", {"by": "dev"})
            done = await _until(h, personal.id, lambda s: s["state"] == "converted", "converted")
            assert done["open_handoff"] is None

            await h.replay("merge", personal, work)
    asyncio.run(scenario())


def test_an_identify_event_without_a_clear_other_id_is_refused_with_the_field():
    base = {"type": "identify", "lead": {"email": PERSONAL}}
    cases = (({}, "data.same_as: an identify event names the other id"),
             ({"same_as": "ana@acme.example"}, "data.same_as: an identify event names"),
             ({"same_as": {}}, "data.same_as: needs an email or an external_id"),
             ({"same_as": {"email": "not-an-address"}}, "data.same_as.email: not an e-mail address"),
             ({"same_as": {"email": PERSONAL.upper()}}, "data.same_as: names the event's own lead"))
    for data, said in cases:
        with pytest.raises(intake.IntakeError) as refused:
            intake.check_event({**base, "data": data})
        assert str(refused.value).startswith(f"bad event: {said}"), str(refused.value)
    assert intake.check_event({**base, "data": {"same_as": {"external_id": "crm-42"}}})["type"] == "identify"
