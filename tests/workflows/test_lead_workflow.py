"""Lead workflows on a real Temporal time-skipping server: weeks of nurture in seconds."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.support.temporal_harness import ROOT, harness


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
            sent = [m["subject"] for m in await h.delivered(
                st["lead_id"], "email", until=lambda m: len(m) >= 5)]
            # each step's e-mail is an activity of its own: the ledger has them all, in any order
            assert sorted(sent[:5]) == sorted(["welcome-guide", "case-study", "roi-calculator",
                                               "webinar-invite", "customer-story"])
            assert st["open_handoff"] is not None
            moves = [(s["from_state"], s["to_state"], s["rule"]) for s in st["story"] if s["rule"]]
            assert moves[-1] == ("nurturing", "sales-ready", "qualify")
            await h.replay("six-weeks-nurture", lead)
    run(scenario())


def test_a_quiet_lead_derails_around_day_30_and_is_re_engaged(tmp_path):
    async def scenario():
        async with harness(tmp_path) as h:
            lead = await h.signup("quiet@acme.example", role="manager")
            await h.env.sleep(timedelta(days=29, hours=23))
            assert (await h.state(lead))["state"] == "nurturing"
            await h.env.sleep(timedelta(hours=2))
            st = await h.state(lead)
            assert st["state"] == "derailed"
            derail = next(s for s in st["story"] if s["to_state"] == "derailed")
            assert derail["rule"] == "go-quiet" and derail["matched"]["inactive_for"] >= 30 * 86400
            # the re-engagement message goes out (delivered() fails the test if it never does)
            await h.delivered(st["lead_id"], "email",
                              until=lambda sent: any(m["subject"] == "we-miss-you" for m in sent))
            await lead.execute_update("submit", {"id": "click", "type": "email_click"})
            st = await h.state(lead)
            assert st["state"] == "nurturing" and st["story"][-1]["rule"] == "re-engaged"
            await h.replay("derail-re-engage", lead)
    run(scenario())


def test_hand_off_accepted_converts_the_lead(tmp_path):
    async def scenario():
        async with harness(tmp_path) as h:
            lead, st, task = await h.hot_lead_with_task("yes@acme.example")
            info = await task.query("task")
            assert info["status"] == "open" and info["queue"] == "account-executives"
            assert info["lead_story"]["scores"]["fit"] >= 50 and "qualify" in info["lead_story"]["fired"]
            # the story sales get is the lead's, each line once
            told = info["lead_story"]["story"]
            assert [s["rule"] for s in told].count("qualify") == 1
            # the lead noted the hand-off after sales got its story
            assert told == st["story"][-len(told) - 1:-1] and "opened" in st["story"][-1]["why"]
            done = await task.execute_update("accept", {"by": "sam"})
            assert done["status"] == "accepted"
            assert (await task.result())["status"] == "accepted"
            st = await h.state(lead)
            assert st["state"] == "converted" and st["open_handoff"] is None
            assert len(await h.delivered(st["lead_id"], "handoff")) == 1
            await h.replay("handoff-accepted", lead, task)
    run(scenario())


def test_hand_off_rejected_recycles_the_lead_with_the_reason(tmp_path):
    async def scenario():
        from temporalio.client import WorkflowUpdateFailedError

        async with harness(tmp_path) as h:
            lead, _, task = await h.hot_lead_with_task("later@acme.example")
            try:
                await task.execute_update("reject", {"reason": "  "})
                raise AssertionError("a rejection without a reason was accepted")
            except WorkflowUpdateFailedError as err:
                assert "needs a reason" in str(err.cause)
            await task.execute_update("reject", {"reason": "no budget until Q3", "by": "sam"})
            await task.result()
            st = await h.state(lead)
            assert st["state"] == "nurturing" and st["facts"]["recycled"] is True
            back = st["story"][-1]
            assert back["rule"] == "handoff.on_reject" and "no budget until Q3" in back["why"]
            assert st["track"]["name"] == "recycle"
            # only new intent sends it back; the same task cannot be answered twice
            await lead.execute_update("submit", {"id": "again", "type": "contact_sales"})
            st = await h.state(lead)
            assert st["state"] == "sales-ready" and st["open_handoff"].endswith("-2")
            await h.replay("handoff-rejected", lead, task)
    run(scenario())


def test_sla_breach_escalates_and_is_recorded(tmp_path):
    async def scenario():
        async with harness(tmp_path) as h:
            lead, _, task = await h.hot_lead_with_task("slow@acme.example")
            await h.env.sleep(timedelta(hours=49))
            info = await task.query("task")
            assert info["status"] == "escalated" and info["queue"] == "sales-managers"
            # the shipped roster: an account executive held it, the manager on duty holds it now
            assert [e["what"] for e in info["log"]] == ["created", "assigned", "sla_breach", "assigned"]
            assert info["log"][1]["rep"] == "ana" and info["rep"] == "dev"
            st = await h.state(lead)
            assert any("SLA breached; escalated to sales-managers" in s["why"] for s in st["story"])
            (msg,) = await h.delivered(st["lead_id"], "escalation")
            assert msg["subject"] == task.id and msg["status"] == "skipped"  # no webhook configured here
            await task.execute_update("accept", {"by": "manager"})
            await task.result()
            assert (await h.state(lead))["state"] == "converted"
            await h.replay("sla-breach", lead, task)
    run(scenario())


def test_repeated_sign_up_joins_the_running_lead(tmp_path):
    async def scenario():
        async with harness(tmp_path) as h:
            first = await h.signup("twice@acme.example", role="manager")
            again = await h.signup("twice@acme.example", role="manager")  # same event id
            assert again.id == first.id
            await first.execute_update("submit", {"id": "signup-2", "type": "signup",
                                         "lead": {"email": " Twice@Acme.example ", "budget": 15000}})
            st = await h.state(first)
            assert st["events"] == 2 and st["state"] == "nurturing"
            assert st["profile"]["budget"] == 15000 and st["scores"]["fit"] == 30
            # signal-with-start joined the running execution instead of starting another
            assert again.result_run_id == first.result_run_id
            assert (await first.describe()).run_id == first.result_run_id
    run(scenario())


def test_unknown_and_malformed_events_are_rejected_into_the_story(tmp_path):
    async def scenario():
        async with harness(tmp_path) as h:
            lead = await h.signup("odd@acme.example", role="manager")
            before = await h.state(lead)
            await lead.signal("event", {"id": "x1", "type": "fax_received"})
            await lead.signal("event", {"id": "x2", "type": "page_view", "at": "yesterday"})
            await lead.signal("event", "not an object")
            await lead.signal("event", {"id": "x3", "type": "page_view",
                                        "lead": {"email": "other@x.example"}})
            answer = await lead.execute_update("submit", {"id": "x4"})
            assert answer["rejected"].startswith("malformed event: type")
            st = await h.state(lead)
            whys = [s["why"] for s in st["story"][-5:]]
            assert whys[0].startswith("rejected: unknown event type 'fax_received'")
            assert whys[1].startswith("rejected: malformed event: at:")
            assert whys[2].startswith("rejected: malformed event")
            assert whys[3] == "rejected: event is for another lead"
            assert st["state"] == before["state"] and st["facts"] == before["facts"]
            assert st["rejected"] == 5
            ok = await lead.execute_update("submit", {"id": "fine", "type": "page_view",
                                                      "data": {"path": "/blog/a"}})
            assert ok["rejected"] is None and ok["scores"]["interest"] == 3
            dup = await lead.execute_update("submit", {"id": "fine", "type": "page_view"})
            assert dup == {"duplicate": True, "event_id": "fine"}
            await h.replay("rejected-events", lead)
    run(scenario())


def test_ten_thousand_events_continue_as_new_and_lose_nothing(tmp_path):
    async def scenario():
        from temporalio.service import RPCError

        from workflows.types import LeadOptions

        async with harness(tmp_path) as h:
            options = LeadOptions(index=False, max_events_per_run=1000)
            lead = await h.signup("busy@acme.example", options, role="manager", company_size=60)
            kinds = ["email_open", "page_view", "email_click", "content_download"]
            sent = 1
            for batch in range(20):
                await asyncio.gather(*(lead.signal("event", {
                    "id": f"e{batch}-{i}", "type": kinds[i % 4], "data": {"path": "/blog/x"}})
                    for i in range(500)))
                sent += 500
            await lead.signal("event", {"id": "last", "type": "reply"})
            sent += 1
            for _ in range(600):  # a stream of signals: wait until the last one is in
                try:
                    st = await lead.query("state", rpc_timeout=timedelta(seconds=30))
                except RPCError:  # a query can time out while the lead works through its backlog
                    continue
                if st["events"] >= sent:
                    break
                await asyncio.sleep(0.5)
            assert st["events"] == sent == 10_002
            # continued as new about every 1,000 events; a run whose queue is over what a run may
            # carry (workflows.lead.PENDING_BYTES, here at the first ones: the 10,000 signals come
            # in faster than they are evaluated) evaluates more before it continues
            assert st["runs"] >= 5
            assert st["state"] == "nurturing" and st["facts"]["researching"] is True
            assert st["scores"]["intent"] == 10.0
            # ids seen in earlier runs are still known: a replayed event changes nothing
            dup = await lead.execute_update("submit", {"id": "e12-3", "type": "content_download"})
            assert dup == {"duplicate": True, "event_id": "e12-3"}
            history = await lead.fetch_history()
            assert len(history.events) < 5000  # the current run's history stays bounded
    run(scenario())


def test_policy_versions_pin_roll_out_and_refuse_bad_files(tmp_path):
    import shutil

    async def scenario():
        policies = tmp_path / "policies"
        policies.mkdir()
        shutil.copy(ROOT / "policies" / "lead-lifecycle.v1.yaml", policies / "v1.yaml")
        async with harness(tmp_path, policy_dir=policies) as h:
            lead = await h.signup("pin@acme.example", role="manager")
            assert (await h.state(lead))["version"] == 1
            v2 = (policies / "v1.yaml").read_text().replace("version: 1\n", "version: 2\n", 1)
            (policies / "v2.yaml").write_text(v2)  # stays: leads keep v1
            (policies / "v3.yaml").write_text(v2.replace("version: 2\n", "version: 3\n", 1)
                                              .replace("state: captured", "state: capturd", 1))
            notes = h.store.reload()
            assert any("v3.yaml: refused" in n and "unknown state 'capturd'" in n for n in notes)
            assert h.store.active().version == 2
            await lead.execute_update("submit", {"id": "a", "type": "email_open"})
            assert (await h.state(lead))["version"] == 1
            newcomer = await h.signup("new@acme.example", role="manager")
            assert (await h.state(newcomer))["version"] == 2
            v4 = v2.replace("version: 2\n", "version: 4\nrollout: {running_leads: move}\n", 1)
            (policies / "v4.yaml").write_text(v4)
            h.store.reload()
            answer = await lead.execute_update("submit", {"id": "b", "type": "email_open"})
            assert answer["version"] == 4
            st = await h.state(lead)
            assert st["version"] == 4
            assert any(s["why"] == "rollout of v4 moved the lead from v1" for s in st["story"])
    run(scenario())


def test_a_policy_error_rejects_only_its_event(tmp_path):
    """A chain longer than limits.max_chain is the policy's fault, not the event's: the event is
    rejected with the policy's message (also when it is the last of a batch), the lead goes on."""
    from tests.support.policy import CHAIN, MINIMAL

    async def scenario():
        policies = tmp_path / "policies"
        policies.mkdir()
        text = CHAIN.replace("policy: mini", "policy: lead-lifecycle") + "limits: {max_chain: 3}\n"
        assert text.startswith(MINIMAL.replace("policy: mini", "policy: lead-lifecycle"))
        (policies / "chain.yaml").write_text(text)
        async with harness(tmp_path, policy_dir=policies) as h:
            lead = await h.signup("loop@acme.example")
            assert (await h.state(lead))["state"] == "scored"
            # a workflow task that fails retries for ever, so bound the wait to fail, not hang
            answer = await asyncio.wait_for(
                lead.execute_update("submit", {"id": "p1", "type": "page_view"}), timeout=20)
            assert answer["rejected"].startswith("policy error: policy lead-lifecycle v1: more than 3 rules")
            ok = await lead.execute_update("submit", {"id": "r1", "type": "reply"})
            assert ok["rejected"] is None and ok["state"] == "scored"
            st = await h.state(lead)
            assert st["story"][-1]["why"].startswith("rejected: policy error:")
            assert st["rejected"] == 1 and st["events"] == 2
            await h.replay("policy-error", lead)
    run(scenario())
