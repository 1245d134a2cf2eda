"""`leadflow policy simulate`: many leads through a policy in virtual time. Timers fire between
events (checks, SLA deadlines with their escalation), sales answers apply to the hand-off open
at their time, and the result is the same on one core or several."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from leadflow.replay.generate import lines
from leadflow.replay.simulate import simulate_lead, simulate_many, summary
from rules.compile import load_compiled
from rules.models import Event
from tests.support.people import merged_person
from tests.support.temporal_harness import ROOT

POLICY = ROOT / "policies" / "lead-lifecycle.v1.yaml"


def event(n: int, kind: str, at: str, **data: object) -> dict:
    raw: dict = {"id": f"e{n}", "type": kind, "at": at, "lead": {"email": "dee@acme.example"},
                 "lead_id": "lead-dee"}
    if data:
        raw["data"] = data
    return raw


def test_sla_deadlines_escalate_answers_meet_the_open_hand_off_and_checks_run_to_the_end():
    policy = load_compiled(str(POLICY))
    signup = {**event(0, "signup", "2026-02-02T09:00:00Z"),
              "lead": {"email": "dee@acme.example", "role": "vp", "budget": 60000, "timeline": "now"}}
    log = [
        signup,
        # an answer before any hand-off: nothing to answer
        event(1, "sales_reject", "2026-02-02T10:00:00Z", reason="too early"),
        event(2, "demo_request", "2026-02-03T09:00:00Z"),
        # the old version's own timers are left out: this one makes its own
        event(3, "sla_breach", "2026-02-03T10:00:00Z", queue="x", breach=1),
        event(4, "sales_reject", "2026-02-08T12:00:00Z", reason="no budget until Q3", by="sam"),
    ]
    result = simulate_lead(policy, "lead-dee", log)
    # the sign-up, the demo, two breaches of the 48 h SLA (on the 5th and the 7th; the answer on the
    # 8th comes before a third) and the answer; no check came due in between
    assert result.skipped == 1 and result.events == 5
    (handoff,) = result.handoffs
    assert handoff["at"] == "2026-02-03T09:00:00Z" and handoff["breaches"] == 2
    assert handoff["queue"] == "account-executives" and handoff["escalated_to"] == "sales-managers"
    assert handoff["answer"] == "rejected"
    assert result.path[:4] == ["captured", "scored", "nurturing", "sales-ready"]
    assert result.sales_ready_at == "2026-02-03T09:00:00Z"
    # left to run for three months, the lead's inactivity checks derail it
    later = simulate_lead(policy, "lead-dee", log, until=datetime(2026, 5, 1, tzinfo=timezone.utc))
    assert later.state == "derailed" and later.events > result.events


def test_many_leads_give_the_same_results_on_one_core_and_on_several(tmp_path: Path):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(lines(150, 60, seed=9)) + "\n")
    from leadflow.replay.simulate import group

    with log.open() as f:
        leads, last = group(f)
    one = simulate_many(str(POLICY), leads, last, processes=1)
    two = simulate_many(str(POLICY), leads, last, processes=2)
    assert one == two and len(one) == 150
    figures = summary(one)
    assert sum(figures["states"].values()) == 150 and figures["handoffs"] > 0

    out = tmp_path / "results.jsonl"
    done = subprocess.run([sys.executable, "-m", "leadflow", "policy", "simulate", str(POLICY), "--events",
                           str(log), "--out", str(out)], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "150 leads" in done.stdout and "account-executives 2026-W" in done.stdout
    assert "events" in done.stderr  # the progress
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written == one
    assert set(written[0]) >= {"lead_id", "email", "state", "path", "fired"}

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "type": "signup"}\n')
    refused = subprocess.run([sys.executable, "-m", "leadflow", "policy", "simulate", str(POLICY),
                              "--events", str(bad)], cwd=ROOT, env=dict(os.environ), capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 1 and f"{bad}:1: an event needs its time, `at`" in refused.stderr


def test_leads_an_identify_event_merged_are_simulated_as_one_person_on_any_number_of_cores():
    """As LeadWorkflow merges: the work lead's hand-off becomes the personal lead's, the work lead
    ends `merged`, and its later events reach the survivor; one core or two, the same."""
    alone = {"id": "a0", "type": "signup", "at": "2026-02-02T09:30:00Z",
             "lead": {"email": "solo@acme.example"}, "lead_id": "lead-alone"}
    log = {**merged_person(), "lead-alone": [alone]}
    until = datetime(2026, 2, 10, tzinfo=timezone.utc)
    one = simulate_many(str(POLICY), log, until, processes=1)
    assert simulate_many(str(POLICY), log, until, processes=2) == one
    results = {r["lead_id"]: r for r in one}
    assert results["lead-w"]["state"] == "merged" and results["lead-alone"]["state"] == "nurturing"
    survivor = results["lead-p"]
    # the work lead's task, taken over and answered: the person converted
    assert [h["task"] for h in survivor["handoffs"]] == ["handoff-lead-w-1"], survivor["handoffs"]
    assert survivor["handoffs"][0]["answer"] == "accepted" and survivor["state"] == "converted", survivor


def test_the_read_builds_events_as_validation_would_and_names_a_line_of_another_shape():
    """`policy simulate` builds its events without the intake's validation (the archive's were
    validated when taken): each is the Event validation makes, and every lead comes out as it
    does through simulate_lead, which validates. A line of another shape is refused, named."""
    from leadflow.replay.simulate import Batch, _events, batches, group, people

    odd = [{"type": "page_view", "at": "2026-03-01T08:00:00", "lead": {"external_id": "crm-1"},
            "lead_id": "lead-odd"},
           {"id": "o1", "type": "signup", "at": "2026-03-01T10:00:00+02:00", "data": {"path": "/NaN-guide"},
            "lead": {"email": "odd@acme.example", "role": "vp", "company_size": 40}, "lead_id": "lead-odd"},
           # equal in Python to the lead before, not the same: sent and built as its own
           {"type": "page_view", "at": "2026-03-02T10:00:00Z", "lead_id": "lead-odd",
            "lead": {"email": "odd@acme.example", "role": "vp", "company_size": 40.0}}]
    text = [*lines(40, 30, seed=3), *map(json.dumps, odd)]
    leads, last = group(text)
    (batch,) = batches(people(leads), 10**6)
    rows = list(zip(batch.ids, batch.types, batch.ats, batch.refs, batch.data, strict=True))
    raws = [raw for raws in leads.values() for raw in raws]
    assert isinstance(batch, Batch) and len(rows) == len(raws) == len(text)
    for event, raw in zip(_events(rows), raws, strict=True):
        validated = Event.model_validate({k: v for k, v in raw.items() if k != "lead_id"})
        assert event == validated and event.model_dump_json() == validated.model_dump_json(), raw
    policy = load_compiled(str(POLICY))
    expected = [simulate_lead(policy, lead_id, raws, last).as_dict() for lead_id, raws in leads.items()]
    assert simulate_many(str(POLICY), leads, last, processes=1) == expected

    for bad, says in [({"type": "Sign Up"}, "bad event: type: String should match pattern"),
                      ({"data": "x"}, "bad event: data: Input should be a valid dictionary"),
                      ({"data": {"score": float("nan")}}, "bad event: data: score is nan"),
                      ({"lead": {"email": 7}}, "bad event: lead.email: Input should be a valid string"),
                      ({"extra": 1}, "bad event: extra: Extra inputs are not permitted")]:
        with pytest.raises(ValueError) as refused:
            group([text[0], "", json.dumps({**odd[1], **bad})], "log.jsonl")
        assert str(refused.value).startswith(f"log.jsonl:3: {says}"), bad


def test_a_plain_log_as_a_person_or_a_crm_writes_it_is_simulated_one_lead_per_person(tmp_path: Path):
    """Events that name their lead by e-mail or external id, no `lead_id`: each person is the
    lead the intake would start (`rules.identity.lead_key`); a line naming both joins the lines
    that named the person by the external id alone; `policy simulate` and `policy diff` read it."""
    from leadflow.replay.simulate import group
    from rules.identity import lead_key
    from rules.models import LeadRef

    hot = {"email": "Ana@Acme.example ", "role": "vp", "budget": 60000, "timeline": "now"}
    plain = [
        {"type": "signup", "at": "2026-03-02T09:00:00Z", "lead": hot},
        {"type": "page_view", "at": "2026-03-02T10:00:00Z", "lead": {"external_id": "crm-7"},
         "data": {"path": "/pricing"}},
        {"type": "page_view", "at": "2026-03-03T09:00:00Z", "lead": {"email": "ana@acme.example"},
         "data": {"path": "/pricing"}},
        {"type": "signup", "at": "2026-03-04T09:00:00Z",
         "lead": {"email": "bo@acme.example", "external_id": "crm-7", "role": "manager"}},
        {"type": "demo_request", "at": "2026-03-05T09:00:00Z", "lead": {"email": "ana@acme.example"}},
        {"type": "email_open", "at": "2026-03-06T09:00:00Z", "lead": {"external_id": "crm-7"}},
    ]
    ana, bo = lead_key(LeadRef(email="ana@acme.example")), lead_key(LeadRef(email="bo@acme.example"))
    leads, last = group(map(json.dumps, plain), "crm.jsonl")
    assert list(leads) == [ana, bo]
    assert [r["type"] for r in leads[bo]] == ["page_view", "signup", "email_open"]  # in time order
    # the same history in the export's own format decides the same
    exported = [{**raw, "lead_id": ana if i in (0, 2, 4) else bo} for i, raw in enumerate(plain)]
    decided = simulate_many(str(POLICY), leads, last, processes=1)
    assert decided == simulate_many(str(POLICY), group(map(json.dumps, exported))[0], last, processes=1)
    # and written newest first, as a CRM may export it: each event at its own time all the same
    backwards, _ = group(map(json.dumps, reversed(plain)), "crm.jsonl")
    assert [r["at"] for r in backwards[ana]] == [r["at"] for r in leads[ana]]
    assert simulate_many(str(POLICY), backwards, last, processes=1) == decided

    for bad, says in [({"type": "page_view", "lead": {"email": "a@b.example"}}, "an event needs its time"),
                      ({"type": "page_view", "at": "2026-03-02T09:00:00Z", "lead": {"role": "vp"}},
                       "the event's lead has no `email` and no `external_id`"),
                      ({"type": "page_view", "at": "2026-03-02T09:00:00Z"}, "an event names its lead")]:
        with pytest.raises(ValueError) as refused:
            group([json.dumps(plain[0]), json.dumps(bad)], "crm.jsonl")
        assert str(refused.value).startswith(f"crm.jsonl:2: {says}"), bad

    log = tmp_path / "crm.jsonl"
    log.write_text("".join(json.dumps(raw) + "\n" for raw in plain))
    cli = [sys.executable, "-m", "leadflow"]
    simulated = subprocess.run([*cli, "policy", "simulate", str(POLICY), "--events", str(log), "--json",
                                "--processes", "1"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert simulated.returncode == 0, simulated.stderr
    assert '"sales-ready"' in simulated.stdout or '"converted"' in simulated.stdout, simulated.stdout
    diffed = subprocess.run([*cli, "policy", "diff", str(POLICY), str(POLICY), "--events", str(log), "--json",
                             "--processes", "1"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert diffed.returncode == 0, diffed.stderr
