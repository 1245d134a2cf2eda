"""Agreement: for generated leads, `policy simulate` ends each lead where the real LeadWorkflow
(and its HandoffWorkflows) end it on the time-skipping server for the same events at the same
times: the same final state, the same transitions by the same rules, the same hand-offs."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

from temporalio.service import RPCError

from leadflow.replay.generate import generate
from leadflow.replay.simulate import simulate_many
from tests.support.temporal_harness import ROOT, harness, settled, start_lead
from workflows.handoff import HandoffWorkflow
from workflows.lead import LeadWorkflow
from workflows.types import AcceptInput, LeadView, RejectInput

POLICY = ROOT / "policies" / "lead-lifecycle.v1.yaml"
LEADS = 150
DAYS = 30
RETENTION = 2 * 86400.0  # short, so leads that end (converted, disqualified) come back within the month


def test_simulate_ends_every_lead_where_the_workflows_do(tmp_path):
    async def live() -> tuple[list[dict[str, Any]], dict[str, LeadView], datetime]:
        async with harness(tmp_path, final_retention=RETENTION) as h:
            env = h.env
            start = (await env.get_current_time()).astimezone(timezone.utc) + timedelta(minutes=1)
            events = list(generate(LEADS, DAYS, seed=21, start=start))
            handles: dict[str, Any] = {}
            ended: dict[str, list[str]] = {}  # the transitions of runs that ended

            for raw in events:
                at = datetime.fromisoformat(raw["at"].replace("Z", "+00:00"))
                ahead = (at - await env.get_current_time()).total_seconds()
                if ahead > 0:
                    await env.sleep(ahead)
                lead_id = raw["lead_id"]
                event = {k: v for k, v in raw.items() if k != "lead_id"}
                if raw["type"] == "signup":
                    handles[lead_id] = await start_lead(h.client, h.settings.task_queue, lead_id, event)
                    continue
                lead = handles[lead_id]
                if raw["type"] in ("sales_accept", "sales_reject"):
                    # as sales would in the inbox: only a hand-off that is open can be answered
                    task = (await settled(lead)).open_handoff
                    if task is None:
                        continue
                    answer = raw.get("data", {})
                    handle = h.client.get_workflow_handle_for(HandoffWorkflow.run, task)
                    if raw["type"] == "sales_accept":
                        accept = AcceptInput(by=answer.get("by", ""))
                        await handle.execute_update(HandoffWorkflow.accept, accept)
                    else:
                        await handle.execute_update(HandoffWorkflow.reject, RejectInput(
                            reason=answer["reason"], by=answer.get("by", "")))
                    continue
                try:
                    await lead.signal(LeadWorkflow.event, event)
                except RPCError:  # its run ended: the next begins with this event, as the intake does
                    ended[lead_id] = ended.get(lead_id, []) + _moves(await lead.query(LeadWorkflow.state))
                    handles[lead_id] = await start_lead(h.client, h.settings.task_queue, lead_id, event)
            until = datetime.fromisoformat(events[-1]["at"].replace("Z", "+00:00"))
            states = {lead_id: await settled(handle) for lead_id, handle in handles.items()}
            earlier_moves.update(ended)
            return events, states, until

    earlier_moves: dict[str, list[str]] = {}
    events, states, until = asyncio.run(live())
    leads: dict[str, list[dict[str, Any]]] = {}
    for raw in events:
        leads.setdefault(raw["lead_id"], []).append(raw)
    simulated = {r["lead_id"]: r for r in simulate_many(str(POLICY), leads, until, processes=1,
                                                        retention=RETENTION)}

    mismatched = []
    for lead_id, state in states.items():
        sim = simulated[lead_id]
        story = earlier_moves.get(lead_id, []) + _moves(state)
        if (state.state, story) != (sim["state"], sim["transitions"]):
            mismatched.append((lead_id, state.state, sim["state"], story, sim["transitions"]))
    assert not mismatched, mismatched[:3]
    # the history went through every path that matters: hand-offs answered both ways, an SLA passed
    finals = {s.state for s in states.values()}
    assert {"nurturing", "converted", "disqualified", "derailed"} <= finals, finals
    handoffs = [h for r in simulated.values() for h in r["handoffs"]]
    assert {h.get("answer") for h in handoffs} >= {"accepted", "rejected"}
    assert any(h.get("breaches") for h in handoffs)
    # and leads ended (a final state kept for the retention) and came back as new runs
    came_back = [lead_id for lead_id, r in simulated.items() if r["ended"] and lead_id in states
                 and states[lead_id].earlier]
    assert len(came_back) >= 3, came_back


def _moves(state: LeadView) -> list[str]:
    return [f"{s['rule']}: {s['from_state']} -> {s['to_state']}" for s in state.story if s["rule"]]
