"""Faults for evaluator processes, for tests: an event whose data says `fault: hang` really hangs
durable-rules (a node with 600 children never returns), `fault: crash` really segfaults the
process. Every other event is evaluated as in production."""

from __future__ import annotations

import ctypes
import json
from datetime import datetime
from typing import Any

from activities.evaluation import Catalog
from activities.evaluation import evaluate_event as real_evaluate_event
from rules.models import Decision, Event, LeadState


def evaluate_event(catalog: Catalog, lead: LeadState | None, event: Event, now: datetime,
                   version: int | None) -> Decision:
    fault: Any = event.data.get("fault")
    if fault == "hang":
        import durable_rules_engine

        wide = {f"r{i}": {"all": [{"m": {"$and": [{"k": "x"}, {"v": i}]}}], "pri": 1} for i in range(600)}
        durable_rules_engine.create_ruleset(f"wide-{event.id}", json.dumps(wide))
    if fault == "crash":
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    return real_evaluate_event(catalog, lead, event, now, version)
