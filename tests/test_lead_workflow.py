"""Lead workflows on a real Temporal time-skipping server: weeks of nurture in seconds."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.temporal_harness import harness


def run(coro):
    return asyncio.run(coro)


def test_six_weeks_of_nurture_ending_sales_ready(tmp_path):
    async def scenario():
        async with harness(tmp_path) as h:
            lead = await h.signup("rita@acme.example", role="director", budget=20000, company_size=80)
            st = await h.state(lead)
            assert st["state"] == "nurturing"
            for week in range(6):
                await h.env.sleep(timedelta(days=7))
                await lead.signal("event", {"id": f"open-{week}", "type": "email_open"})
            await lead.signal("event", {"id": "pricing-1", "type": "page_view", "data": {"path": "/pricing"}})
            answer = await lead.execute_update("submit", {"id": "demo", "type": "demo_request"})
            assert answer["state"] == "sales-ready"
            st = await h.state(lead)
            sent = [m["payload"]["content"] for m in h.outbox.list(lead=st["lead_id"], kind="send")]
            assert sent[:5] == ["welcome-guide", "case-study", "roi-calculator", "webinar-invite",
                                "customer-story"]
            assert st["open_handoff"] is not None
            moves = [(s["from_state"], s["to_state"], s["rule"]) for s in st["story"] if s["rule"]]
            assert moves[-1] == ("nurturing", "sales-ready", "qualify")
    run(scenario())
