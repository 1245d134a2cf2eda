"""Sales routing on the time-skipping server: hand-offs spread over a queue's reps by their
capacity, a rep who is away gets none, a task waits (and says why) while nobody is free, an SLA
breach passes the task to the next rep and the next one escalates it, and the policy's routing
rule sends a big company to its own queue. The roster is a file, as sales keep it."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from temporalio.client import Client

from rules.identity import lead_key
from rules.models import LeadRef
from tests.support.temporal_harness import Harness, harness
from workflows.types import LeadOptions

POLICY = """\
policy: lead-lifecycle
version: 1
owners: {marketing: [m@example.com], sales: [s@example.com]}
states: [captured, scored, nurturing, sales-ready, derailed, converted]
rules:
  - {id: score-new, priority: 50, when: {state: captured}, then: {transition: scored}}
  - id: qualify
    priority: 40
    when: {state: scored, lead.role: {ne: student}}
    then: {transition: sales-ready, handoff: true}
  - {id: nurture, priority: 30, when: {state: scored}, then: {transition: nurturing}}
  - {id: quiet, priority: 20, when: {state: nurturing, inactive_for: {gte: 30d}},
     then: {transition: derailed}}
handoff:
  queue: ae
  sla: 48h
  on_accept: {transition: converted}
  on_reject: {transition: nurturing}
  on_breach: {reassign: next, then: {escalate_to: managers}}
routing:
  - {id: big, when: {lead.company_size: {gte: 1000}}, queue: enterprise}
"""

# capacities 1:2:3, as 100, 200 and 300 open tasks: 600 hand-offs are one full round of the robin
# and fill the queue, so the next one waits
WAVE = 600


def _roster(now: datetime) -> str:
    away_from, away_until = (now - timedelta(days=1)).isoformat(), (now + timedelta(days=30)).isoformat()
    return f"""\
reps:
  - {{id: ana, queues: [ae], capacity: 100}}
  - {{id: ben, queues: [ae], capacity: 200}}
  - {{id: cy, queues: [ae], capacity: 300}}
  - {{id: dora, queues: [ae], capacity: 30, away: {{from: "{away_from}", until: "{away_until}"}}}}
  - {{id: eli, queues: [enterprise], capacity: 5}}
  - {{id: max, name: Max Manager, queues: [managers], capacity: 5}}
"""


async def _lead(client: Client, queue: str, email: str, **profile: object) -> str:
    event = {"id": f"signup-{email}", "type": "signup", "lead": {"email": email, "role": "vp", **profile}}
    key = lead_key(LeadRef(email=email))
    await client.start_workflow("LeadWorkflow", args=[event, LeadOptions(index=False)], id=key,
                                task_queue=queue, start_signal="event", start_signal_args=[event])
    return key


async def _until(check, what: str, tries: int = 400):  # type: ignore[no-untyped-def]
    for _ in range(tries):
        if result := check():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def _story(h: Harness, key: str, *lines: str) -> list[str]:
    """The lead's story, once it tells each of `lines` (a lead takes a hand-off's news on its own time)."""
    for _ in range(200):
        story = [s["why"] or "" for s in (await h.client.get_workflow_handle(key).query("state"))["story"]]
        if all(any(line in why for why in story) for line in lines):
            return story
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key}: the story never told {lines}: {story}")


def test_hand_offs_spread_by_capacity_skip_the_away_wait_when_full_and_pass_on_at_a_breach(tmp_path: Path):
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "routing-test.v1.yaml").write_text(POLICY)
    (policies / "roster.yaml").write_text(_roster(datetime.now(timezone.utc)))

    async def scenario() -> None:
        async with harness(tmp_path, policy_dir=policies) as h:
            desk_rows = lambda **kw: h.delivery.ledger and _desk(h).assigned(**kw)  # noqa: E731
            queue = h.settings.task_queue

            # routing: a company of 5,000 goes to the enterprise queue, by its rule
            big = await _lead(h.client, queue, "cto@bigco.example", company_size=5000)
            (row,) = await _until(lambda: desk_rows(queue="enterprise"), "the enterprise task")
            info = await _query_until(h, row["task"], lambda t: t["rep"])
            assert info["rep"] == "eli" and info["route"] == "big" and info["log"][0]["route"] == "big"
            await _story(h, big, "assigned to eli in queue enterprise by routing rule big")
            await h.client.get_workflow_handle(row["task"]).execute_update("accept", {"by": "eli"})

            # SLA: the first breach passes the task to the next free rep, the second escalates it
            # to the managers (first, while the clock may run: the 600 below have SLAs too)
            slow = await _lead(h.client, queue, "slow@acme.example")
            (row,) = await _until(lambda: desk_rows(queue="ae"), "the slow lead's task")
            task = h.client.get_workflow_handle(row["task"])
            holder = (await _query_until(h, row["task"], lambda t: t["rep"]))["rep"]
            await h.env.sleep(timedelta(hours=49))
            info = await task.query("task")
            assert info["rep"] not in (None, holder, "dora")
            assert info["queue"] == "ae" and info["status"] == "open"
            breach = [e for e in info["log"] if e["what"] == "sla_breach"]
            assert breach[0]["step"] == "reassign" and breach[0]["from_rep"] == holder
            await h.env.sleep(timedelta(hours=49))
            info = await task.query("task")
            assert info["status"] == "escalated" and info["queue"] == "managers" and info["rep"] == "max"
            assert [e["what"] for e in info["log"]] == [
                "created", "assigned", "sla_breach", "assigned", "sla_breach", "assigned"]
            await _story(h, slow, f"SLA breached; passed from {holder} to {info['log'][3]['rep']}",
                         "SLA breached; escalated to managers (max)",
                         "assigned to max (Max Manager) in queue managers")
            await task.execute_update("accept", {"by": "max"})
            await _until(lambda: not desk_rows(queue="managers"), "the manager's place freed")
            await h.replay("routing", task)

            # 600 hand-offs at once: spread 1:2:3, none to the rep who is away
            await asyncio.gather(*(_lead(h.client, queue, f"w{i}@acme.example") for i in range(WAVE)))
            rows = await _until(lambda: (r := desk_rows(queue="ae")) and len(r) == WAVE and r, "all assigned",
                                tries=2000)
            spread = Counter(row["rep"] for row in rows)
            assert sum(spread.values()) == 600 and "dora" not in spread  # away: skipped
            for rep, share in (("ana", 100), ("ben", 200), ("cy", 300)):
                assert abs(spread[rep] - share) <= share * 0.02, spread

            # full: one more than the queue holds waits, and says so; an answer frees a place
            await _lead(h.client, queue, "one-more@acme.example")
            waiting = await _until(lambda: desk_rows(queue="ae", waiting=True), "a task waiting")
            (late,) = waiting
            info = await _query_until(h, late["task"], lambda t: t["waiting"])
            assert info["rep"] is None and "no rep free" in info["waiting"] and "dora away" in info["waiting"]
            await _story(h, late["lead"], "waits in queue ae: no rep free")
            first = desk_rows(queue="ae")[0]
            await h.client.get_workflow_handle(first["task"]).execute_update("accept", {"by": first["rep"]})
            info = await _until(lambda: _rep_of(h, late["task"]), "the waiting task assigned")
            assert info == first["rep"]  # the only place that freed
            await _story(h, late["lead"], f"assigned to {first['rep']} in queue ae")
    asyncio.run(scenario())


async def _query_until(h: Harness, task: str, check):  # type: ignore[no-untyped-def]
    """The task as its workflow tells it, once `check` holds (the database may be ahead of it)."""
    for _ in range(400):
        info = await h.client.get_workflow_handle(task).query("task")
        if check(info):
            return info
        await asyncio.sleep(0.05)
    raise AssertionError(f"{task}: never as expected: {info}")


def _desk(h: Harness):  # type: ignore[no-untyped-def]
    from leadflow.routing.desk import Desk

    return Desk(h.delivery.ledger, h.settings.roster_file)


def _rep_of(h: Harness, task: str) -> str | None:
    row = _desk(h).of([task]).get(task)
    return row["rep"] if row and row["status"] == "open" else None
