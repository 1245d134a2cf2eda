"""The `leadflow` command as ops use it: test output on failure, and a lead's trail."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.policy import DEFAULT_POLICY, MINIMAL, ROOT


def leadflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "leadflow", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def test_policy_test_prints_expected_versus_actual(tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text(MINIMAL + """\
tests:
  - name: reaches nurturing
    events: [{type: signup}, {type: page_view, at: +1d}]
    expect: {state: nurturing, fired: [to-nurturing]}
  - name: wrongly expects sales-ready
    events: [{type: signup}]
    expect: {state: sales-ready, fired: [to-ready]}
""")
    out = leadflow("policy", "test", str(policy))
    assert out.returncode == 1
    assert f"PASS {policy}: reaches nurturing" in out.stdout
    assert f"FAIL {policy}: wrongly expects sales-ready" in out.stdout
    assert "state: expected 'sales-ready', got 'scored' (path captured -> scored)" in out.stdout
    assert "fired: expected rule 'to-ready' to fire; fired: to-scored" in out.stdout
    assert out.stdout.rstrip().endswith("policy tests: 1 passed, 1 failed")


def test_explain_prints_the_trail_of_a_lead(tmp_path):
    lead = tmp_path / "lead.json"
    lead.write_text(json.dumps({"email": "ana@acme.example", "role": "vp", "budget": 60000,
                                "timeline": "now"}))
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in [
        {"id": "a", "type": "signup", "at": "2026-11-23T10:00:00Z"},
        {"id": "b", "type": "demo_request", "at": "2026-11-24T10:00:00Z"},
    ]))
    out = leadflow("policy", "explain", str(DEFAULT_POLICY), "--lead", str(lead),
                   "--events", str(events))
    assert out.returncode == 0, out.stderr
    assert "signup           captured -> nurturing" in out.stdout
    assert "stage      qualify" in out.stdout and "score.intent=40.0" in out.stdout
    assert "action     create_handoff account-executives" in out.stdout
    assert out.stdout.rstrip().endswith("path: captured -> scored -> nurturing -> sales-ready")
    as_json = leadflow("policy", "explain", str(DEFAULT_POLICY), "--lead", str(lead),
                       "--events", str(events), "--json")
    decisions = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [d["state"] for d in decisions] == ["nurturing", "sales-ready"]
    assert decisions[1]["fired"][-1]["rule"] == "qualify"


def test_explain_refuses_a_bad_event_line_clearly(tmp_path):
    lead = tmp_path / "lead.json"
    lead.write_text('{"email": "ana@acme.example"}')
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "signup"}\n{"type": "Page View"}\n')
    out = leadflow("policy", "explain", str(DEFAULT_POLICY), "--lead", str(lead), "--events", str(events))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert f"{events}:2: bad event: type:" in out.stderr


def test_send_refuses_an_event_type_no_policy_knows_before_sending_anything():
    lines = "\n".join([
        json.dumps({"type": "teleport", "lead": {"email": "kim@acme.example"}}),
        "{not json",
        json.dumps({"type": "page_view", "lead": {}}),
    ])
    # no Temporal server is running for this test: refusals need none
    out = subprocess.run([sys.executable, "-m", "leadflow", "send", "--json", "-"], input=lines,
                         capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert out.returncode == 1, out.stderr
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["line"], r["status"]) for r in results] == [(1, "refused"), (2, "refused"), (3, "refused")]
    assert results[0]["error"].startswith(
        "type: unknown event type 'teleport': policy lead-lifecycle v1 knows ")
    assert "demo_request" in results[0]["error"] and "page_view" in results[0]["error"]
    assert results[1]["error"].startswith("not JSON")
    assert results[2]["error"] == "bad event: lead: needs an email or an external_id"
