"""Merging two leads that are one person: the other lead's events, addressed to the survivor,
join the survivor's in time order (rules.identity.merged_log) and the lifecycle runs over all of
them again (rules.simulate, as a replay does), so scores, counts and the stage come from the
whole history, as if the person had used one address all along.

It runs in a process of its own (`replay_apart`): it is the rules engine, and the engine is kept
out of the worker's process (activities.evaluator_pool says why)."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from dataclasses import asdict
from datetime import datetime
from typing import Any

from rules.compile import compile_policy
from rules.simulate import Simulation
from rules.validate import load_policy_bytes


def replay(source: bytes, file: str, lead_id: str, events: list[dict[str, Any]], until: str
           ) -> dict[str, Any]:
    """The lead the merged events make (JSON): `lead`, `scores`, and a hand-off the history opened
    and nobody answered (`handoff`: the action; `decision`: the Decision that opened it)."""
    from rules.models import Event

    sim = Simulation(compile_policy(load_policy_bytes(source, file)), lead_id, retention=None)
    for raw in events:
        sim.take(Event.model_validate({k: v for k, v in raw.items() if k != "lead_id"}))
    sim.finish(datetime.fromisoformat(until))
    lead = sim.cycle.lead
    out: dict[str, Any] = {"lead": lead.model_dump(mode="json") if lead else None,
                           "scores": sim.cycle.scores.model_dump(mode="json") if lead else None}
    if sim.opened_by is not None:
        action, decision = sim.opened_by
        out["handoff"] = asdict(action)
        out["decision"] = decision.model_dump(mode="json")
    return out


def replay_apart(source: bytes, file: str, lead_id: str, events: list[dict[str, Any]], until: str
                 ) -> dict[str, Any]:
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as one:
        return one.submit(replay, source, file, lead_id, events, until).result(timeout=300)
