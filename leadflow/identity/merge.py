"""Merging two leads that are one person: the other lead's events, addressed to the survivor,
join the survivor's in time order and the policy runs over all of them again, so scores, counts
and the stage come from the whole history, as if the person had used one address all along.

The replay runs in a process of its own (`replay_apart`): it is the rules engine, and the engine
is kept out of the worker's process (activities.evaluator_pool says why)."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from datetime import datetime
from typing import Any

IDENTITY = ("email", "external_id")


def identity_of(profile: dict[str, Any]) -> dict[str, Any]:
    return {k: profile[k] for k in IDENTITY if profile.get(k)}


def readdress(event: dict[str, Any], identity: dict[str, Any]) -> dict[str, Any]:
    """The event as the survivor's: its lead's identity becomes the survivor's where the survivor
    has one (an e-mail, an external id); the profile facts it brought stay."""
    lead = {**(event.get("lead") or {}), **identity}
    return {**event, "lead": lead}


def merged_log(own: list[dict[str, Any]], other: list[dict[str, Any]], identity: dict[str, Any]
               ) -> list[dict[str, Any]]:
    """Both leads' events in the order they happened (the survivor's first where two coincide),
    each once."""
    seen: set[str] = set()
    both = []
    for event in [*own, *(readdress(e, identity) for e in other)]:
        if event.get("id") in seen:
            continue
        seen.add(str(event.get("id")))
        both.append(event)
    return sorted(both, key=lambda e: str(e.get("at") or ""))


def replay(source: bytes, file: str, lead_id: str, events: list[dict[str, Any]], until: str
           ) -> dict[str, Any]:
    """The lead the merged events make (JSON): `lead`, `scores`, and a hand-off the history opened
    and nobody answered (`handoff`: the action; `decision`: the Decision that opened it)."""
    from dataclasses import asdict

    from leadflow.replay.simulate import simulate_lead
    from rules.compile import compile_policy
    from rules.validate import load_policy_bytes

    policy = compile_policy(load_policy_bytes(source, file))
    keep: dict[str, Any] = {}
    simulate_lead(policy, lead_id, events, until=datetime.fromisoformat(until), retention=None, keep=keep)
    out: dict[str, Any] = {"lead": keep["lead"].model_dump(mode="json") if keep.get("lead") else None,
                           "scores": keep["scores"].model_dump(mode="json") if keep.get("scores") else None}
    if keep.get("handoff") is not None:
        out["handoff"] = asdict(keep["handoff"])
        out["decision"] = keep["handoff_decision"].model_dump(mode="json")
    return out


def replay_apart(source: bytes, file: str, lead_id: str, events: list[dict[str, Any]], until: str
                 ) -> dict[str, Any]:
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as one:
        return one.submit(replay, source, file, lead_id, events, until).result(timeout=300)
