"""Routing in `policy simulate` and `policy diff`: the simulated hand-offs replayed against the
roster as the Desk assigns them (capacity, away, the waiting line, weighted round robin), and a
change that only moves enterprise leads to another queue showing as load moving between reps."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from leadflow.replay.diff import compare, html_report, table
from leadflow.replay.routing_load import Assignment, Task, replay, week_of
from leadflow.replay.routing_report import choose_roster, section
from leadflow.replay.routing_report import table as simulate_table
from leadflow.replay.simulate import simulate_many
from leadflow.routing.roster import Roster, RosterInvalid, parse_roster
from tests.support.temporal_harness import ROOT

POLICY = ROOT / "policies" / "lead-lifecycle.v1.yaml"
ROSTER = ROOT / "policies" / "roster.yaml"
MONDAY = datetime(2026, 3, 2, tzinfo=timezone.utc)  # 2026-W10


def hours(n: float) -> datetime:
    return MONDAY + timedelta(hours=n)


def roster(text: str) -> Roster:
    return parse_roster(text, "roster.yaml")


def held_at_once(stays: list[Assignment], rep: str) -> int:
    """The most tasks the rep held at one moment ([taken, left): a place frees as it is answered)."""
    spans = [(s.at, s.until) for s in stays if s.rep == rep and s.at is not None]
    return max((sum(1 for a, u in spans if a <= t and (u is None or t < u)) for t, _ in spans), default=0)


def test_a_rep_of_capacity_one_holds_one_task_and_the_rest_wait_in_line_oldest_first():
    one = roster("reps: [{id: solo, queues: [q], capacity: 1}]")
    tasks = [Task("t1", "q", hours(9), hours(12)), Task("t2", "q", hours(10), hours(13)),
             Task("t3", "q", hours(10.5)),  # never answered: holds the place to the end
             Task("t4", "q", hours(11), hours(11.5))]  # answered while it waited: never reaches solo
    load = replay(tasks, one)
    took = {s.task.id: (s.rep, s.at) for s in load.assignments}
    assert took["t1"] == ("solo", hours(9))
    assert took["t2"] == ("solo", hours(12))  # the moment t1 was answered
    assert took["t3"] == ("solo", hours(13))
    assert took["t4"] == (None, None)
    assert held_at_once(load.assignments, "solo") == 1
    assert load.assigned == {("solo", "2026-W10"): 3}
    assert load.waited == {("q", "2026-W10"): 3} and load.waiting_at_end == 0
    assert load.open_at_end == {"solo": 1}


def test_no_task_goes_to_a_rep_while_away_and_waiting_tasks_take_her_back_at_once():
    team = roster("""
reps:
  - {id: ana, queues: [q], capacity: 5, away: {from: 2026-03-02, until: 2026-03-04}}
  - {id: bob, queues: [q], capacity: 1}
""")
    tasks = [Task(f"t{n}", "q", hours(10 + n)) for n in range(4)]  # Monday, none answered
    load = replay(tasks, team)
    back = datetime(2026, 3, 4, tzinfo=timezone.utc)
    took = {s.task.id: (s.rep, s.at) for s in load.assignments}
    assert took["t0"] == ("bob", hours(10))
    assert all(took[t] == ("ana", back) for t in ("t1", "t2", "t3"))  # the moment she is back
    assert not any(s.rep == "ana" and s.at and team.reps[0].away_at(s.at) for s in load.assignments)
    assert load.waited == {("q", "2026-W10"): 3}


def test_free_reps_share_by_capacity_and_a_queue_no_rep_works_is_counted_apart():
    team = roster("reps: [{id: ana, queues: [q], capacity: 2}, {id: ben, queues: [q], capacity: 1}]")
    # one at a time, each answered before the next: the round robin alone decides
    tasks = [Task(f"t{n}", "q", hours(n), hours(n + 0.5)) for n in range(30)]
    tasks.append(Task("lost", "nobody", hours(3)))
    load = replay(tasks, team)
    assert load.assigned == {("ana", "2026-W10"): 20, ("ben", "2026-W10"): 10}
    assert [s.rep for s in load.assignments if s.queue == "q"][:6] == ["ana", "ben", "ana"] * 2
    assert load.unstaffed == {("nobody", "2026-W10"): 1} and not load.waited


def test_an_escalation_frees_the_first_reps_place_and_asks_the_next_queue():
    team = roster("reps: [{id: ae, queues: [sales], capacity: 1}, {id: boss, queues: [managers]}]")
    tasks = [Task("late", "sales", hours(0), hours(60), moves=((hours(48), "managers"),)),
             Task("next", "sales", hours(1), hours(50))]
    load = replay(tasks, team)
    stays = [(s.task.id, s.queue, s.rep, s.at, s.until) for s in load.assignments]
    assert stays == [("late", "sales", "ae", hours(0), hours(48)),
                     ("next", "sales", "ae", hours(48), hours(50)),  # the place `late` left
                     ("late", "managers", "boss", hours(48), hours(60))]


def test_in_any_history_capacity_away_and_the_line_hold():
    team = roster(ROSTER.read_text().replace("capacity: 3", "capacity: 1") + """
  - id: eve
    queues: [account-executives, enterprise-accounts]
    capacity: 2
    away: {from: 2026-03-03T12:00Z, until: 2026-03-05}
""")
    rng = random.Random(7)
    queues = ["account-executives", "enterprise-accounts", "sales-managers", "partners"]
    tasks = []
    for n in range(400):
        opened = hours(rng.uniform(0, 24 * 14))
        closed = opened + timedelta(hours=rng.expovariate(1 / 20)) if rng.random() < 0.8 else None
        moves = ((opened + timedelta(hours=48), "sales-managers"),) if rng.random() < 0.2 else ()
        tasks.append(Task(f"t{n}", rng.choice(queues), opened, closed, moves))
    load = replay(tasks, team)
    for rep in team.reps:
        assert held_at_once(load.assignments, rep.id) <= rep.capacity
        assert not any(s.rep == rep.id and s.at and rep.away_at(s.at) for s in load.assignments)
    for s in load.assignments:
        assert s.at is None or (s.since <= s.at and (s.until is None or s.at <= s.until))
    # first come, first served: a task of a queue waits only while an older one waits there
    staffed = [s for s in load.assignments if s.queue != "partners"]
    for s in staffed:
        if s.at is not None and s.at > s.since:
            older = [o for o in staffed if o.queue == s.queue and o.task.opened < s.task.opened
                     and o.since <= s.at]
            assert all(o.at is not None and o.at <= s.at or o.until is not None and o.until <= s.at
                       for o in older)
    assert sum(load.unstaffed.values()) == sum(1 for s in load.assignments if s.queue == "partners")
    assert sum(load.assigned.values()) == sum(1 for s in load.assignments if s.rep)
    assert load.waited and load.waiting_at_end >= 0


def lead_log(n: int, enterprise: bool, day: float, answered: bool) -> list[dict[str, Any]]:
    """A VP who asks for a demo the next day: one hand-off, answered six hours later or not at all."""
    lead_id, email = f"lead-{n}", f"vp{n}@{'big' if enterprise else 'mid'}corp.example"

    def at(h: float) -> str:
        return (MONDAY + timedelta(days=day, hours=h)).isoformat().replace("+00:00", "Z")

    profile = {"email": email, "role": "vp", "budget": 60000, "timeline": "now",
               "company_size": 5000 if enterprise else 200}
    out = [{"id": f"{n}-0", "type": "signup", "at": at(9), "lead": profile, "lead_id": lead_id},
           {"id": f"{n}-1", "type": "demo_request", "at": at(33), "lead": {"email": email},
            "lead_id": lead_id}]
    if answered:
        out.append({"id": f"{n}-2", "type": "sales_accept", "at": at(39), "lead": {"email": email},
                    "data": {"by": "sam"}, "lead_id": lead_id})
    return out


def test_a_routing_only_change_moves_the_load_between_the_reps_of_the_two_queues(tmp_path: Path):
    text = POLICY.read_text()
    assert "    queue: enterprise-accounts\n" in text
    new = tmp_path / "lead-lifecycle.v2.yaml"  # enterprise leads go to the managers instead
    new.write_text(text.replace("version: 1\n", "version: 2\n", 1)
                   .replace("    queue: enterprise-accounts\n", "    queue: sales-managers\n"))
    # two weeks, a lead a day, every other one an enterprise; the last two never answered
    leads = {f"lead-{n}": lead_log(n, n % 2 == 0, n, n < 12) for n in range(14)}
    last = max(datetime.fromisoformat(e["at"].replace("Z", "+00:00")) for ev in leads.values() for e in ev)
    old = simulate_many(str(POLICY), leads, last, processes=1)
    changed = simulate_many(str(new), leads, last, processes=1)
    choice = choose_roster(str(ROSTER))
    report = compare(str(POLICY), str(new), leads, old, changed, last, choice)

    assert report["changed"] == 7 and report["ended_differently"] == 0  # the enterprise leads
    routing = report["routing"]
    assert routing["roster"] == str(ROSTER)
    total = routing["assigned"]
    assert total["carla"]["old"] > 0 and total["carla"]["new"] == 0
    assert total["dev"] == {"old": 0, "new": 7, "change": 7}
    assert total["ben"]["change"] < 0  # he works both queues: his enterprise share is gone
    assert sum(n["change"] for n in total.values()) == 0  # the same tasks, other reps
    assert routing["handoffs"] == {"old": 14, "new": 14, "change": 0}
    weeks = routing["assigned_per_week"]
    assert weeks["dev 2026-W10"]["new"] + weeks["dev 2026-W11"]["new"] == 7
    assert sum(n["change"] for k, n in weeks.items() if k.startswith("carla ")) == -total["carla"]["old"]

    shown = table(report)
    assert "sales load per rep per week (roster " in shown
    assert f"  {'dev in all':<30} {0:>5}  {7:>5}  {7:>+6}" in shown
    assert "Sales load per rep per week" in html_report(report)

    # `policy simulate`'s section for the new version alone: the same figures, one side
    alone = section(changed, choice)
    assert alone["assigned"] == {rep: n["new"] for rep, n in total.items()}
    assert "  in all: ana " in simulate_table(alone)


def test_without_a_roster_file_the_section_says_so_and_counts_hand_offs_per_queue(tmp_path: Path):
    choice = choose_roster(None, default=tmp_path / "roster.yaml")
    assert choice.roster is None and "roster.yaml not found" in choice.note
    results = [{"handoffs": [{"task": "h1", "queue": "account-executives", "at": "2026-03-02T10:00:00Z"},
                             {"task": "h2", "queue": "account-executives", "at": "2026-03-09T10:00:00Z",
                              "answered_at": "2026-03-09T11:00:00Z"}]}]
    shown = section(results, choice)
    assert shown == {"roster": None, "note": choice.note, "handoffs_per_week": {
        "account-executives 2026-W10": 1, "account-executives 2026-W11": 1}}
    assert simulate_table(shown).startswith("sales load per rep per week: no roster file (")
    assert week_of(datetime(2027, 1, 1, tzinfo=timezone.utc)) == "2026-W53"


def test_a_roster_named_but_missing_or_invalid_is_an_error(tmp_path: Path):
    with pytest.raises(ValueError, match="--roster .*nope.yaml"):
        choose_roster(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "roster.yaml"
    bad.write_text("reps:\n  - {id: ana, queues: [q], capacity: -1}\n")
    with pytest.raises(RosterInvalid, match="roster.yaml:2"):
        choose_roster(None, default=bad)
