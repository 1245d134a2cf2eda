"""`leadflow policy diff`: a change to the qualifying threshold, on a generated history, shows
who ends differently, where each of them parted from the old run and by which rules, what it
does to the sales load, and an HTML page with its charts inside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from leadflow.replay.generate import lines
from tests.support.temporal_harness import ROOT

OLD = ROOT / "policies" / "lead-lifecycle.v1.yaml"


def diff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "leadflow", "policy", "diff", *args], cwd=ROOT,
                          env=dict(os.environ), capture_output=True, text=True, timeout=300)


def test_a_stricter_threshold_shows_who_changes_why_and_the_sales_load(tmp_path: Path):
    text = OLD.read_text()
    assert "      score.intent: {gte: 25}\n" in text
    new = tmp_path / "lead-lifecycle.v2.yaml"  # sales asks for more intent before a hand-off
    new.write_text(text.replace("version: 1\n", "version: 2\n", 1)
                   .replace("      score.intent: {gte: 25}\n", "      score.intent: {gte: 40}\n"))
    log = tmp_path / "history.jsonl"
    log.write_text("\n".join(lines(400, 60, seed=4)) + "\n")
    page = tmp_path / "leadflow.reports.html"

    done = diff(str(OLD), str(new), "--events", str(log), "--json", "--report", str(page))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["leads"] == 400 and report["changed"] > 0
    assert report["handoffs_change"] < 0  # a stricter bar hands fewer leads to sales
    assert sum(n for move, n in report["moves"].items()) == report["changed"]
    assert any(move.startswith(("sales-ready ->", "converted ->")) for move in report["moves"])
    weeks = report["handoffs_per_week"]
    assert sum(w["old"] for w in weeks.values()) == report["old"]["handoffs"]
    assert sum(w["new"] for w in weeks.values()) == report["new"]["handoffs"]
    parted = report["partings"][0]
    assert parted["event_id"] and parted["event_type"] and parted["at"]
    assert "qualify" in parted["old_fired"] + parted["new_fired"]  # the rule the change is about
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 2 and (parted["email"] or parted["lead_id"]) in html

    table = diff(str(OLD), str(new), "--events", str(log), "--processes", "1")
    assert table.returncode == 0, table.stderr
    head = f"400 leads; {report['changed']} run differently, {report['ended_differently']} end"
    assert head in table.stdout
    assert 0 < report["ended_differently"] <= report["changed"]
    assert "hand-offs per queue per week" in table.stdout and "where they parted" in table.stdout

    same = diff(str(OLD), str(OLD), "--events", str(log), "--json")
    assert json.loads(same.stdout)["changed"] == 0


def test_a_routing_only_change_shows_the_sales_load_moving_between_reps(tmp_path: Path):
    text = OLD.read_text()
    new = tmp_path / "lead-lifecycle.v2.yaml"  # companies of 200 or more go to the enterprise team
    new.write_text(text.replace("version: 1\n", "version: 2\n", 1).replace(
        "    when: {facts.segment: enterprise}\n", "    when: {lead.company_size: {gte: 200}}\n"))
    log = tmp_path / "history.jsonl"
    log.write_text("\n".join(lines(400, 30, seed=4)) + "\n")
    roster = ROOT / "policies" / "roster.yaml"

    done = diff(str(OLD), str(new), "--events", str(log), "--roster", str(roster), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["changed"] > 0 and report["ended_differently"] == 0 and report["handoffs_change"] == 0
    total = report["routing"]["assigned"]
    assert total["carla"]["change"] > 0 and total["ana"]["change"] <= 0  # to the enterprise team
    table = diff(str(OLD), str(new), "--events", str(log), "--roster", str(roster), "--processes", "1")
    assert "sales load per rep per week (roster " in table.stdout and "carla in all" in table.stdout

    alone = subprocess.run([sys.executable, "-m", "leadflow", "policy", "simulate", str(new), "--events",
                            str(log), "--json", "--roster", str(roster)], cwd=ROOT, env=dict(os.environ),
                           capture_output=True, text=True, timeout=300)
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout)["routing"]["assigned"] == {rep: n["new"] for rep, n in total.items()}


def test_where_a_merged_lead_parted_is_found_with_the_lead_it_merged_with(tmp_path: Path):
    """The personal lead took over the work lead's hand-off: only run together do the two show
    the shorter SLA breaching it before sales answer."""
    from datetime import datetime, timezone

    from leadflow.replay.diff import parting
    from leadflow.replay.simulate import people
    from rules.compile import load_compiled
    from tests.support.people import merged_person

    text = OLD.read_text()
    assert "  sla: 48h\n" in text
    new = tmp_path / "lead-lifecycle.v2.yaml"
    new.write_text(text.replace("version: 1\n", "version: 2\n", 1).replace("  sla: 48h\n", "  sla: 12h\n"))
    log = merged_person()
    (group,) = people(log)
    until = datetime(2026, 2, 5, tzinfo=timezone.utc)
    parted = parting(load_compiled(str(OLD)), load_compiled(str(new)), "lead-p", group, until)
    assert parted.event_type == "sla_breach" and parted.at == "2026-02-02T23:00:00Z", parted
    alone = parting(load_compiled(str(OLD)), load_compiled(str(new)), "lead-p", {"lead-p": log["lead-p"]},
                    until)
    assert alone.event_type is None  # without the work lead, there was no hand-off to breach
