"""Search attributes on a real dev server (the time-skipping server has no visibility to speak
of): a lead's state is indexed as its state changes, a score-only change a little later."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

from activities.policies import PolicyStore
from leadflow.settings import Settings
from rules.identity import lead_key
from rules.models import LeadRef
from tests.support.temporal_harness import ROOT
from worker import build_worker
from workflows import search
from workflows.lead import score_index_delay
from workflows.types import LeadOptions


def test_state_is_indexed_at_once_and_a_score_only_change_soon_after(tmp_path, shared_server):
    space = shared_server.space("indexing")

    async def scenario():
        client = await space.client()
        settings = Settings(home=tmp_path, policy_dir=ROOT / "policies", task_queue=space.task_queue)
        store = PolicyStore(settings.policy_dir, content_dir=settings.content_dir)
        store.reload()
        options = LeadOptions(score_index_seconds=1)
        email = "counted@acme.example"
        signup = {"id": "s1", "type": "signup", "lead": {"email": email, "role": "manager"}}

        async def indexed(lead) -> tuple[str | None, float | None]:
            attrs = (await lead.describe()).typed_search_attributes
            return attrs.get(search.LEAD_STATE), attrs.get(search.LEAD_SCORE)

        async def until_indexed(lead, want: tuple[str, float], seconds: float) -> float:
            begin = time.monotonic()
            while (got := await indexed(lead)) != want:
                assert time.monotonic() - begin < seconds, f"indexed {got}, expected {want}"
                await asyncio.sleep(0.1)
            return time.monotonic() - begin

        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            async with build_worker(client, settings, store, pool):
                lead = await client.start_workflow(
                    "LeadWorkflow", args=[signup, options], id=lead_key(LeadRef(email=email)),
                    task_queue=settings.task_queue, start_signal="event", start_signal_args=[signup])
                first = await lead.execute_update("submit", {"id": "v0", "type": "email_open"})
                await until_indexed(lead, (first["state"], first["scores"]["total"]), 10)
                viewed = await lead.execute_update("submit", {"id": "v1", "type": "page_view",
                                                              "data": {"path": "/blog/a"}})
                assert viewed["state"] == first["state"]
                assert viewed["scores"]["total"] > first["scores"]["total"]
                assert await indexed(lead) == (first["state"], first["scores"]["total"])  # not yet
                delay = score_index_delay(lead.id, options.score_index_seconds).total_seconds()
                took = await until_indexed(lead, (viewed["state"], viewed["scores"]["total"]), 15)
                # waits for its timer (the dev server's timers tick about once a second)
                assert took >= delay - 0.5

    asyncio.run(scenario())
