"""The policy's `routing:` section: which queue a hand-off goes to. The first rule whose `when`
holds for the lead as the evaluation left it (its profile, facts, scores and state) picks the
queue; with none, the hand-off's own queue. Read in Python, not by the engine: it is asked once
per hand-off, not on every event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rules.conditions import All, Any_, Cond, holds

# What a routing rule may read: who the lead is and what the evaluation made of it, not the
# event that happened to tip it over (the same lead must route the same way whatever it did last)
ROUTING_FIELDS = ("lead.", "facts.", "score.")


@dataclass(frozen=True)
class Route:
    id: str
    cond: Cond | None
    queue: str


def value_of(field: str, values: Mapping[str, Mapping[str, Any]], state: str) -> Any:
    if field == "state":
        return state
    head, _, rest = field.partition(".")
    node: Any = values.get(head)
    for part in rest.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def holds_for(cond: Cond, values: Mapping[str, Mapping[str, Any]], state: str) -> bool:
    if isinstance(cond, All):
        return all(holds_for(c, values, state) for c in cond.items)
    if isinstance(cond, Any_):
        return any(holds_for(c, values, state) for c in cond.items)
    return holds(cond.op, value_of(cond.field, values, state), cond.value)


def route(routes: tuple[Route, ...], lead: Mapping[str, Any], facts: Mapping[str, Any],
          scores: Mapping[str, Any], state: str) -> Route | None:
    """The first routing rule that holds, or None."""
    values = {"lead": lead, "facts": facts, "score": scores}
    for candidate in routes:
        if candidate.cond is None or holds_for(candidate.cond, values, state):
            return candidate
    return None
