"""The evaluator sends a lead workflow what an evaluation changed of the lead, not the lead
(rules.lead_delta, activities.evaluation.BatchResult.slim): a lead with a large profile keeps it
in its history once, at capture, however many events it takes. That the lead the workflow
rebuilds is byte for byte the evaluator's own, tests/unit/test_compiled_evaluator.py checks on
every generated history."""

from __future__ import annotations

import json
from typing import Any

from temporalio.api.enums.v1 import EventType

from tests.support.temporal_harness import LoopThread, harness
from workflows.types import LeadOptions

COMPANY = "Northwind Analytics and Sons, " * 30  # ~900 characters a whole lead would carry each time


def test_history_holds_the_lead_once_and_the_workflow_rebuilds_it_exactly(tmp_path: Any) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            lead = await h.signup("delta@acme.example", LeadOptions(index=False), role="director",
                                  company=COMPANY, budget=20000, company_size=120)
            kinds = ["page_view", "email_open", "email_click", "page_view", "content_download",
                     "webinar_attended", "page_view", "email_open"]
            for i, kind in enumerate(kinds):
                answer = await lead.execute_update(
                    "submit", {"id": f"e{i}", "type": kind, "data": {"path": f"/blog/p{i}"}})
                assert answer["rejected"] is None
            state = await h.state(lead)
            assert state["events"] == 1 + len(kinds)
            history = await lead.fetch_history()
            results = []
            for event in history.events:
                if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and \
                        event.marker_recorded_event_attributes.marker_name == "core_local_activity":
                    payloads = event.marker_recorded_event_attributes.details["result"].payloads
                    results += [json.loads(p.data) for p in payloads]
            assert len(results) >= 1 + len(kinds)  # a batch per update, the sign-up's own
            assert all(r["decisions"] == [] and r["deltas"] for r in results)
            # the profile crossed once: in the sign-up's changes, the whole lead then
            assert sum(COMPANY in json.dumps(r) for r in results) == 1
            later = [d["lead_changes"] for r in results[1:] for d in r["deltas"]]
            assert later and all("profile" not in c and "fit_key" not in c for c in later)


    LoopThread("lead-delta").run(scenario(), timeout=180)
