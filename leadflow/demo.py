"""A one-minute demo from the seeds' stories: a hot lead, a cold one that nurtures, a junk
one, and one that went quiet (its sign-up is 40 days old, imported from a CRM)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from temporalio.client import Client

from leadflow.intake import send
from leadflow.settings import Settings
from workflows.handoff import HandoffWorkflow
from workflows.lead import LeadWorkflow


def _stories(now: datetime) -> list[tuple[str, list[dict[str, Any]]]]:
    def at(days: float) -> str:
        return (now + timedelta(days=days)).isoformat()

    return [
        ("hot: a VP with budget who looks at pricing and asks for a demo", [
            {"id": "demo-hot-1", "type": "signup", "at": at(-2), "lead": {
                "email": "ana.ruiz@acme.example", "first_name": "Ana", "last_name": "Ruiz", "company": "Acme",
                "role": "vp", "company_size": 250, "budget": 50000, "timeline": "this-quarter"},
             "data": {"source": "webinar"}},
            {"id": "demo-hot-2", "type": "page_view", "at": at(-1),
             "lead": {"email": "ana.ruiz@acme.example"}, "data": {"path": "/pricing"}},
            {"id": "demo-hot-3", "type": "demo_request", "lead": {"email": "ana.ruiz@acme.example"}},
        ]),
        ("cold: a manager at a small shop, reading the blog", [
            {"id": "demo-cold-1", "type": "signup", "lead": {
                "email": "sam@smallshop.example", "first_name": "Sam", "role": "manager", "company_size": 8}},
            {"id": "demo-cold-2", "type": "page_view", "lead": {"email": "sam@smallshop.example"},
             "data": {"path": "/blog/lead-scoring"}},
        ]),
        ("junk: a disposable address", [
            {"id": "demo-junk-1", "type": "signup", "lead": {
                "email": "free-stuff@mailinator.com", "role": "vp", "budget": 99999}},
        ]),
        ("quiet: signed up 40 days ago and never came back", [
            {"id": "demo-quiet-1", "type": "signup", "at": at(-40), "lead": {
                "email": "lee@quietco.example", "first_name": "Lee", "role": "director", "company_size": 40}},
        ]),
    ]


async def play(client: Client, settings: Settings, say: Callable[[str], None] = print
               ) -> list[dict[str, Any]]:
    results = []
    for title, events in _stories(datetime.now(timezone.utc)):
        say(f"\n== {title}")
        outcome: dict[str, Any] = {}
        for event in events:
            outcome = await send(client, settings, event, wait=True, door="demo")
        lead = client.get_workflow_handle(outcome["lead_id"])
        state = (await lead.query(LeadWorkflow.state)).model_dump(mode="json")
        path = [state["story"][0]["from_state"]] if state["story"] else []
        path += [s["to_state"] for s in state["story"] if s["rule"]]
        say(f"   lead {state['lead_id']}: {' -> '.join(path) or state['state']}")
        for s in state["story"]:
            if s["rule"] or s["why"].startswith(("hand-off", "rejected")):
                say(f"     {s['event_type']:<13} {s['from_state']} -> {s['to_state']}"
                    f"  [{s['rule'] or '-'}] {s['why']}")
        if state["open_handoff"]:
            handle = client.get_workflow_handle(state["open_handoff"])
            task = await handle.query(HandoffWorkflow.snapshot)
            say(f"   task {task.id} for queue {task.queue}, SLA {(task.sla_seconds or 0) / 3600:g}h")
        results.append(state)
    return results


def generated_history(settings: Settings, leads: int = 300, days: float = 30, seed: int = 1) -> list[str]:
    """What the active policy makes of a generated history (`leadflow generate` through `leadflow
    policy simulate`, in this process): the lines the demo prints after its four leads."""
    from leadflow.db.database import Database
    from leadflow.governance.registry import Registry
    from leadflow.replay.generate import lines
    from leadflow.replay.simulate import group, simulate_lead, summary
    from rules.compile import compile_policy
    from rules.validate import load_policy_bytes

    ledger = Database.of(settings)
    try:
        registry = Registry(ledger)
        state = registry.state(settings.policy)
        active = registry.by_sha(state.sha) if state is not None else None
    finally:
        ledger.close()
    if active is None:
        return []
    policy = compile_policy(load_policy_bytes(active.text, active.file))
    history, last = group(lines(leads, days, seed))
    results = [simulate_lead(policy, lead_id, raws, last).as_dict() for lead_id, raws in history.items()]
    figures = summary(results)
    ranked = sorted(figures["states"].items(), key=lambda kv: -kv[1])
    states = ", ".join(f"{state} {n}" for state, n in ranked)
    median = figures["median_days_to_sales_ready"]
    return [f"\n== {leads} generated leads over {days:g} days through {policy.name} v{policy.version}, "
            f"in virtual time (leadflow generate | leadflow policy simulate)",
            f"   {sum(len(r) for r in history.values())} events; final states: {states}",
            f"   hand-offs {figures['handoffs']}; median days from sign-up to sales-ready "
            f"{'-' if median is None else median}"]
