"""A lead's state has a size bound (issue 22): the caps of rules.models refuse oversized events at
validation, naming the field, and the largest lead they allow continues as new with a carried
payload well under Temporal's 2 MB limit."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from temporalio.service import RPCError

from leadflow.intake import IntakeError, check_event
from rules.identity import lead_key
from rules.lifecycle import LeadEnding
from rules.models import (
    MAX_EVENT_BYTES,
    MAX_FIELD_NAME,
    MAX_PROFILE_FIELDS,
    MAX_PROFILE_VALUE,
    LeadRef,
    StoryEntry,
)
from tests.support.temporal_harness import harness
from workflows.lead import PENDING_BYTES, SEEN_LIMIT, STORY_BYTES
from workflows.types import LeadCarry, LeadOptions

EMAIL = "max." + "x" * (320 - len("max.@acme.example")) + "@acme.example"  # the longest allowed
EXTERNAL_ID = "crm-" + "9" * 196  # likewise


def _fields(start: int, stop: int) -> dict[str, str]:
    """Profile fields with the longest names and values the caps allow."""
    return {f"f{i:02d}".ljust(MAX_FIELD_NAME, "_"): chr(ord("a") + i % 26) * MAX_PROFILE_VALUE
            for i in range(start, stop)}


def _refusal(raw: dict[str, Any]) -> str:
    with pytest.raises(IntakeError) as err:
        check_event(raw)
    return str(err.value)


def test_oversized_events_are_refused_naming_the_field():
    ok = {"type": "signup", "lead": {"email": EMAIL, "external_id": EXTERNAL_ID, **_fields(0, 25)}}
    assert len(json.dumps(ok)) < MAX_EVENT_BYTES
    check_event(ok)  # at the caps: taken
    many = {"type": "signup", "lead": {"email": "a@acme.example", **{f"f{i}": i for i in range(51)}}}
    assert _refusal(many) == "bad event: lead: 51 profile fields; at most 50 besides email and external_id"
    long = {"type": "signup", "lead": {"email": "a@acme.example", "company": "c" * 1001}}
    assert _refusal(long) == ("bad event: lead: profile field 'company' is a text of 1001 characters; "
                              "at most 1000")
    nested = {"type": "signup", "lead": {"email": "a@acme.example", "tags": ["t" * 300] * 4}}
    assert _refusal(nested) == ("bad event: lead: profile field 'tags' is a value of 1213 characters; "
                                "at most 1000")
    named = {"type": "signup", "lead": {"email": "a@acme.example", "n" * 65: 1}}
    assert _refusal(named).startswith("bad event: lead: a profile field's name is 65 characters ('nnnn")
    big = {"type": "page_view", "lead": {"email": "a@acme.example"},
           "data": {k: "d" * 9000 for k in ("a", "b", "c", "d")}}
    assert _refusal(big).startswith("bad event: event: the event is 36") and big["data"]["a"]
    assert _refusal(big).endswith(f"bytes as JSON; at most {MAX_EVENT_BYTES}")


def test_a_lead_refuses_an_event_that_would_give_it_too_many_profile_fields(tmp_path):
    async def scenario():
        async with harness(tmp_path) as h:
            lead = await h.signup("wide@acme.example", LeadOptions(index=False),
                                  **{f"f{i}": i for i in range(30)})
            more = {"id": "more", "type": "form_submit",
                    "lead": {"email": "wide@acme.example", **{f"g{i}": i for i in range(21)}}}
            answer = await lead.execute_update("submit", more)
            assert answer == {"rejected": "lead: the lead would have 51 profile fields with this event's; "
                                          "at most 50 besides email and external_id"}
            fewer = {**more, "id": "fewer", "lead": {"email": "wide@acme.example",
                                                      **{f"g{i}": i for i in range(20)}}}
            assert (await lead.execute_update("submit", fewer))["rejected"] is None
            st = await h.state(lead)
            assert len(st["profile"]) == 1 + MAX_PROFILE_FIELDS
            # the refused event was not applied, so it is no duplicate: the same id again is
            # evaluated (and refused again)
            assert (await lead.execute_update("submit", more))["rejected"].startswith("lead: the lead would")
            await h.replay("profile-cap", lead)
    asyncio.run(scenario())


def _entry(i: int) -> StoryEntry:
    """A story line as long as an older run could leave one (today's are shortened)."""
    return StoryEntry(at=f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z", event_id=f"e{i}",
                      event_type="page_view", from_state="nurturing", to_state="scored", rule="bounce",
                      policy="lead-lifecycle", version=1, why="w" * 500,
                      matched={"event.path": "/" + "p" * 150, "lead.company": "c" * 150})


def _largest_carry() -> LeadCarry:
    """What a run of the code before the caps could carry into the next (about 1.7 MB, under the
    2 MB a start input may have), with the lead's own events queued: its sign-up and a form at the
    profile caps, and a burst of events at the size cap."""
    signup = {"id": "signup-max", "type": "signup",
              "lead": {"email": EMAIL, "external_id": EXTERNAL_ID, "role": "vp", **_fields(0, 24)}}
    form = {"id": "form-max", "type": "form_submit",
            "lead": {"email": EMAIL, **_fields(24, MAX_PROFILE_FIELDS - 1)}}
    burst = [{"id": f"burst-{i}", "type": "page_view", "lead": {"email": EMAIL},
              "data": {"path": "/" + "p" * 9_999, "q": "q" * 10_000, "r": "r" * 10_000, "s": "s" * 2_200}}
             for i in range(24)]
    for raw in (signup, form, *burst):
        check_event(raw)  # each within the caps; the burst's at the size cap
    assert MAX_EVENT_BYTES - 200 < len(json.dumps(burst[0], separators=(",", ":"))) <= MAX_EVENT_BYTES
    ended = LeadEnding(lead_id="x", run_id="r", state="disqualified", since="2026-01-01T00:00:00Z",
                       ended_at="2026-01-02T00:00:00Z", why="w" * 800, story=[_entry(i) for i in range(20)])
    return LeadCarry(
        story=[_entry(i) for i in range(500)], story_dropped=0,
        seen=[f"seen-{i:05d}-" + "s" * 30 for i in range(SEEN_LIMIT)],
        pending=[{"raw": e} for e in (signup, form, *burst)],
        earlier=[ended.model_copy(update={"run_id": f"r{i}"}) for i in range(10)],
        aliases=[{"lead_id": f"lead-{i:020d}", "email": f"alias{i}." + "a" * 290 + "@acme.example",
                  "at": "2026-01-01T00:00:00Z"} for i in range(10)],
        received=[f"content-{i}" for i in range(20)],
        score_history=[(f"2026-01-01T00:00:{i % 60:02d}Z", 1.0, 2.0, 3.0, 6.0) for i in range(200)])


def test_the_largest_lead_continues_as_new_well_under_the_payload_limit(tmp_path):
    carry = _largest_carry()

    async def scenario():
        async with harness(tmp_path) as h:
            options = LeadOptions(index=False, max_events_per_run=2)
            wid = lead_key(LeadRef(email=EMAIL))
            first = await h.client.start_workflow(
                "LeadWorkflow", args=[carry.pending[0]["raw"], options, carry], id=wid,
                task_queue=h.settings.task_queue)
            handle = h.client.get_workflow_handle(wid)
            for _ in range(300):
                try:  # a query that meets the lead between two runs may time out: ask again
                    st = await handle.query("state", rpc_timeout=timedelta(seconds=5))
                except RPCError:
                    continue
                if st["events"] >= 26:
                    break
                await asyncio.sleep(0.1)
            # the first run's continue-as-new: what it carried
            history = await h.client.get_workflow_handle(wid, run_id=first.result_run_id).fetch_history()
            (moved,) = [e.workflow_execution_continued_as_new_event_attributes for e in history.events
                        if e.HasField("workflow_execution_continued_as_new_event_attributes")]
            carried = sum(p.ByteSize() for p in moved.input.payloads)
            started = sum(p.ByteSize() for p in history.events[0].workflow_execution_started_event_attributes
                          .input.payloads)
            print(f"\nstarted with {started / 1e6:.2f} MB; carried {carried / 1e6:.3f} MB into the next run")
            assert started > 1_500_000  # what the code before could carry
            assert carried < 1_000_000  # well under the 2 MB limit
            next_carry = json.loads(moved.input.payloads[2].data)
            assert len(json.dumps(next_carry["pending"], separators=(",", ":"))) <= PENDING_BYTES
            assert len(next_carry["seen_keys"]) == SEEN_LIMIT and next_carry["seen"] == []
            assert len(json.dumps(next_carry["story"], separators=(",", ":"))) <= STORY_BYTES + 4_000
            assert len(next_carry["earlier"]) == 3
            # the lead goes on: every queued event applied, the largest profile kept, ids remembered
            assert st["events"] == 26 and st["rejected"] == 0 and st["state"], st
            assert len(st["profile"]) == 2 + MAX_PROFILE_FIELDS and st["profile"]["email"] == EMAIL.lower()
            assert st["story_dropped"] > 0
            dup = await handle.execute_update("submit", {"id": "seen-01234-" + "s" * 30, "type": "page_view"})
            assert dup["duplicate"] is True
            dup = await handle.execute_update("submit", {"id": "burst-7", "type": "page_view"})
            assert dup["duplicate"] is True
            after = await handle.execute_update("submit", {"id": "after", "type": "email_open"})
            assert after.get("rejected") is None and after["event_type"] == "email_open"
            assert (await handle.query("state"))["events"] == 27
    asyncio.run(scenario())
