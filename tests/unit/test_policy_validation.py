"""Every way a policy file can be wrong gets `file:line: rule-id: message`, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from rules.validate import load_policy_bytes
from tests.support.policy import DEFAULT_POLICY, MINIMAL, ROOT, policy_from, problems


def test_default_policy_is_valid_and_rich():
    loaded = load_policy_bytes(DEFAULT_POLICY.read_bytes(), "default")
    p = loaded.policy
    assert {"captured", "scored", "nurturing", "sales-ready", "derailed"} <= set(p.states)
    assert {r.bant for r in p.scoring.fit} >= {"budget", "authority", "need", "timeline"}
    assert {r.signal for r in p.scoring.engagement} == {"interest", "intent"}
    assert p.handoff and p.handoff.on_reject and p.handoff.on_breach
    assert len(p.tests) >= 10


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "p.yaml:1: file: file is empty"),
        (b"   \n\n", "p.yaml:1: file: file is empty"),
        (b"policy: x\nversion: [1,\n", "p.yaml:3: file: broken YAML"),
        (b"policy: x\nstates: \xff\xfe\n", "p.yaml:2: file: file is not UTF-8 (byte 0xff)"),
        (b"policy: a\npolicy: b\n", "p.yaml:2: file: duplicate key 'policy'"),
        (b"- just\n- a list\n", "p.yaml:1: file: a policy file is a YAML mapping"),
    ],
)
def test_unreadable_files(raw: bytes, expected: str):
    assert problems(raw)[0].startswith(expected)


def test_schema_error_points_at_the_rule_and_line():
    text = MINIMAL + "  - {id: bad, when: {state: scored}, then: {transitoin: nurturing}}\n"
    (line,) = problems(text)
    assert line.startswith("p.yaml:10: bad: rules.4.then: unknown key(s)")
    assert "transitoin" in line


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("  - {id: x, when: {state: scord}, then: {transition: scored}}\n",
         "p.yaml:10: x: unknown state 'scord'"),
        ("  - {id: x, when: {state: scored}, then: {transition: salesready}}\n",
         "p.yaml:10: x: unknown state 'salesready'"),
        ("  - {id: x, when: {state: scored}, then: {track: nowhere}}\n",
         "p.yaml:10: x: unknown track 'nowhere'"),
        ("  - {id: x, when: {state: scored}, then: {send: brochure}}\n",
         "p.yaml:10: x: unknown content 'brochure'"),
        ("  - {id: to-scored, when: {state: scored}, then: {set: {a: 1}}}\n",
         "p.yaml:10: to-scored: duplicate rule id 'to-scored' (first at line 6)"),
        ("  - {id: x, when: {score.fit: {gte: 50, lt: 10}}, then: {set: {a: 1}}}\n",
         "p.yaml:10: x: condition can never hold: score.fit cannot be both above 50 and below 10"),
        ("  - {id: x, when: {state: scored, all: [{state: nurturing}]}, then: {set: {a: 1}}}\n",
         "p.yaml:10: x: condition can never hold: state cannot equal"),
        ("  - {id: x, when: {event.type: pageview}, then: {set: {a: 1}}}\n",
         "p.yaml:10: x: unknown event type 'pageview'"),
        ("  - {id: x, when: {lead.role: {in_list: roles}}, then: {set: {a: 1}}}\n",
         "p.yaml:10: x: unknown list 'roles'"),
        ("  - {id: x, when: {not: {event.path: {prefix: /p}}}, then: {set: {a: 1}}}\n",
         "p.yaml:10: x: `not` cannot negate prefix"),
        ("  - {id: x, when: {score.fit: {gte: high}}, then: {set: {a: 1}}}\n",
         "p.yaml:10: x: gte needs a number"),
        ("  - {id: x, when: {inactive_for: {gte: 30 days}}, then: {set: {a: 1}}}\n",
         "p.yaml:10: x: inactive_for compares with a duration"),
        ("  - {id: x, when: {wibble: 1}, then: {set: {a: 1}}}\n",
         "p.yaml:10: x: unknown field 'wibble'"),
    ],
)
def test_semantic_errors(extra: str, expected: str):
    found = problems(MINIMAL + extra)
    assert any(line.startswith(expected) for line in found), found


def test_unreachable_state():
    text = MINIMAL.replace("derailed]", "derailed, converted]")
    assert "p.yaml:4: states: state 'converted' is unreachable: no rule moves a lead there" in problems(text)


def test_missing_lifecycle_state():
    lines = MINIMAL.replace(", derailed]", "]").splitlines(keepends=True)
    text = "".join(line for line in lines if "to-derailed" not in line)
    assert any("the lifecycle state 'derailed' is required" in line for line in problems(text))


def test_unguarded_cycle_is_refused_but_a_guarded_one_is_not():
    cycle = MINIMAL + (
        "  - {id: back, when: {state: nurturing}, then: {transition: scored}}\n"
        "  - {id: forth, when: {state: scored}, then: {transition: nurturing}}\n")
    found = problems(cycle)
    assert any("rules back -> forth can cycle with no guard" in line
               or "rules forth -> back can cycle with no guard" in line for line in found), found
    guarded = MINIMAL + (
        "  - {id: back, when: {state: nurturing, event.type: reply}, then: {transition: scored}}\n")
    load_policy_bytes(textwrap.dedent(guarded).encode(), "p.yaml")


def test_track_content_and_test_expectations_are_checked():
    text = MINIMAL + textwrap.dedent("""\
        content: [guide]
        nurture:
          tracks:
            t1:
              steps: [{after: 3d, send: guide}, {after: 1d, send: missing}]
        tests:
          - {name: n, events: [{type: signup}], expect: {state: gone}}
        """)
    found = problems(text)
    assert any(":14: track t1: unknown content 'missing'" in line for line in found), found
    assert any(":14: track t1: steps must be in order of `after`" in line for line in found), found
    assert any(":16: test 'n': unknown state 'gone'" in line for line in found), found


def test_cli_validate_reports_every_file_and_exits_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"policy: x\n\xff")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    out = subprocess.run(
        [sys.executable, "-m", "leadflow", "policy", "validate", str(DEFAULT_POLICY), str(bad), str(empty)],
        capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert f"{bad}:2: file: file is not UTF-8" in out.stderr
    assert f"{empty}:1: file: file is empty" in out.stderr
    assert f"{DEFAULT_POLICY}: ok" in out.stdout


def test_a_comparison_with_null_is_refused():
    found = problems(MINIMAL + "  - {id: nulls, when: {lead.role: {ne: null}}, then: {set: {a: 1}}}\n")
    assert found == [f"p.yaml:{MINIMAL.count(chr(10)) + 1}: nulls: ne compares with null, which no field "
                     "holds: write `exists: false` (or `exists: true`)"]


ROUTED = MINIMAL + """\
handoff: {queue: account-executives, sla: 48h}
routing:
  - id: big
    when: {lead.company_size: {gte: 1000}}
    queue: enterprise-accounts
  - id: rest
    queue: account-executives
"""
QUEUE_LINE = ROUTED.splitlines().index("    queue: enterprise-accounts") + 1
UNSERVED = (f"p.yaml:{QUEUE_LINE}: warning: routing 'big': queue 'enterprise-accounts' is served by no rep "
            "of roster.yaml: a hand-off routed there would wait where nobody reads it")


def test_a_routing_rule_to_a_queue_no_rep_serves_is_a_warning_at_its_line_not_a_problem():
    from rules.validate import unserved_queues

    loaded = load_policy_bytes(ROUTED.encode(), "p.yaml")  # it loads: a warning refuses nothing
    assert [str(w) for w in unserved_queues(loaded, ["account-executives", "sales-managers"],
                                            "roster.yaml")] == [UNSERVED]
    assert unserved_queues(loaded, ["account-executives", "enterprise-accounts"]) == []


def _folder(tmp_path, *queues: str):
    """A policy folder as shipped: the policy, and sales' roster beside it."""
    folder = tmp_path / "policies"
    folder.mkdir(exist_ok=True)
    (folder / "p.yaml").write_text(ROUTED)
    reps = "".join(f"  - {{id: rep{i}, queues: [{q}]}}\n" for i, q in enumerate(queues))
    (folder / "roster.yaml").write_text(f"reps:\n{reps}")
    return folder


def test_cli_validate_warns_of_an_unserved_queue_and_still_passes(tmp_path, monkeypatch, capsys):
    from leadflow.cli.main import main

    monkeypatch.delenv("LEADFLOW_ROSTER", raising=False)
    folder = _folder(tmp_path, "account-executives")
    policy, roster = folder / "p.yaml", folder / "roster.yaml"
    warning = UNSERVED.replace("p.yaml", str(policy)).replace("of roster.yaml", f"of {roster}")
    # the policy with its roster, the roster alone (the policies beside it), the policy alone
    # (the roster beside it): each says it, once, and none fails
    for files in ([policy, roster], [roster], [policy]):
        assert main(["policy", "validate", *map(str, files)]) == 0, files
        out = capsys.readouterr()
        assert out.err.splitlines() == [warning], files
        assert f"{files[0]}: ok" in out.out
    # with the queue staffed, nothing to say
    _folder(tmp_path, "account-executives", "enterprise-accounts")
    assert main(["policy", "validate", str(policy), str(roster)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_roster_apply_warns_of_a_queue_it_leaves_unserved_and_applies(tmp_path, monkeypatch, capsys):
    from leadflow.cli.main import main

    folder = _folder(tmp_path, "account-executives", "enterprise-accounts")
    monkeypatch.setenv("LEADFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEADFLOW_POLICY_DIR", str(folder))
    monkeypatch.setenv("LEADFLOW_ROSTER", str(folder / "roster.yaml"))
    new = folder / "roster.yaml"  # sales edit it: nobody on enterprise accounts next week
    new.write_text("reps:\n  - {id: ana, queues: [account-executives]}\n")
    assert main(["roster", "apply", str(new), "--as", "sam"]) == 0
    out = capsys.readouterr()
    assert out.err.splitlines() == [
        UNSERVED.replace("p.yaml", str(folder / "p.yaml")).replace("of roster.yaml", f"of {new}")]
    assert f"roster replaced from {new}: 1 reps" in out.out
    assert main(["roster", "show", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)["reps"]] == ["ana"]


def test_a_policy_where_no_lead_can_reach_sales_ready_is_refused_at_the_rule_that_asks_too_much():
    """Scores have bounds (fit rules' points and fit_cap, each signal's rule caps, engagement_cap):
    a policy whose only way to sales-ready asks for more is refused, saying why; the same policy
    with a cap high enough, or a second way there, is taken."""
    base = """\
policy: capped
version: 1
owners: {marketing: [m@example.com], sales: [s@example.com]}
states: [captured, scored, nurturing, sales-ready, derailed]
scoring:
  fit:
    - {id: vp, when: {lead.role: vp}, points: 30}
  engagement:
    - {id: pricing, on: page_view, when: {event.path: {prefix: /pricing}}, points: 15, signal: intent,
       cap: 45}
    - {id: careers, on: page_view, when: {event.path: {prefix: /careers}}, points: -5, signal: intent}
rules:
  - {id: to-scored, when: {state: captured}, then: {transition: scored}}
  - {id: to-nurturing, when: {state: scored}, then: {transition: nurturing}}
  - {id: qualify, when: {state: nurturing, score.intent: {gte: 50}}, then: {transition: sales-ready}}
  - {id: to-derailed, when: {state: nurturing, inactive_for: {gte: 30d}}, then: {transition: derailed}}
"""
    (problem,) = problems(base)
    assert problem == ("p.yaml:15: qualify: no lead can ever reach sales-ready: score.intent >= 50 needs "
                       "more than the 45 the policy's rules and caps can give"), problem
    policy_from(base.replace("cap: 45", "cap: 60"))
    policy_from(base.replace("score.intent: {gte: 50}", "score.total: {gte: 70}"))  # 30 + 45
    assert "score.total > 75" in problems(base.replace("score.intent: {gte: 50}", "score.total: {gt: 75}"))[0]
    policy_from(base + "  - {id: asked, when: {event.type: demo_request}, then: {transition: sales-ready}}\n")


def test_delivery_manners_are_checked_at_their_lines():
    text = MINIMAL + """\
content: [welcome]
profile: {tz: number, country: text}
delivery:
  max_per_day: 3
  max_per_week: 2
  quiet_hours: "08:00-08:00"
  timezone: Mars/Olympus_Mons
  timezone_field: tz
  transactional: [receipt]
"""
    assert problems(text) == [
        "p.yaml:13: delivery: max_per_day 3 can never be reached: max_per_week is 2",
        "p.yaml:15: delivery: quiet hours '08:00-08:00' are empty: start and end are the same time",
        "p.yaml:16: delivery: unknown time zone 'Mars/Olympus_Mons' (an IANA name such as Europe/Berlin)",
        "p.yaml:17: delivery: field 'tz' is a number in the profile; a zone or a country is text",
        "p.yaml:18: delivery: unknown content 'receipt'",
    ]
    (line,) = problems(MINIMAL + 'delivery: {quiet_hours: "8pm-8am"}\n')
    assert line.startswith("p.yaml:10: delivery: delivery.quiet_hours: '8pm-8am' does not match")


def test_delivery_manners_of_a_sound_policy_pass():
    loaded = load_policy_bytes((MINIMAL + """\
content: [welcome]
profile: {tz: text}
delivery: {max_per_day: 1, when_capped: skip, quiet_hours: "20:00-08:00", timezone_field: tz,
           timezone: Europe/Berlin, transactional: [welcome]}
""").encode(), "p.yaml")
    manners = loaded.policy.delivery
    assert manners is not None and manners.country_field == "country" and manners.when_capped == "skip"
