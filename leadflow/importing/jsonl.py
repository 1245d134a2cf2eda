"""A JSON Lines export's events to their leads: each line checked as the intake checks an event
(`leadflow.intake.check_event`: its shape, caps, e-mail, a lead named by e-mail or external id; an
id from its content when it has none), or, for a line of `leadflow events export` (with its
`lead_id`), as an Event; then named and joined into people as `policy simulate` reads such a log
(`leadflow.replay.simulate.group`). A line that fails is refused with its number; the others go on."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from leadflow.importing.mapping import ImportMap
from leadflow.importing.rows import Lead, source_of, validated
from leadflow.intake import IntakeError, check_event
from leadflow.replay.simulate import group
from rules.models import OUTCOME, OUTCOMES, SYSTEM_EVENTS, Event

NOT_TAKEN = ("check",)  # the lead's own timer makes them


@dataclass
class Read:
    leads: list[Lead] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    lines: int = 0


def read_events(lines: Iterable[tuple[int, str]], spec: ImportMap, known: frozenset[str] | None,
                name: str) -> Read:
    """The events of the lines, by lead: a sign-up's `data.source` read as a CSV's source column
    is (`spec.source`); `known`: the event types the policy knows (None: any)."""
    out = Read()
    checked: list[str] = []
    for n, line in lines:
        out.lines += 1
        try:
            checked.append(json.dumps(_checked(line, spec, known)))
        except ValueError as err:
            out.refused.append((n, str(err)))
    grouped, _ = group(checked, name)
    for key, raws in grouped.items():
        events = [Event.model_validate({k: v for k, v in raw.items() if k != "lead_id"}) for raw in raws]
        signup = next((e for e in events if e.type == "signup"), None)
        outcomes = [e for e in events if e.type == OUTCOME]
        source = signup.data.get("source") if signup is not None else None
        out.leads.append(Lead(key, events, source if isinstance(source, str) else None,
                              str(outcomes[-1].data["outcome"]) if outcomes else None))
    return out


def in_utc_raw(raw: dict[str, Any]) -> dict[str, Any]:
    """The line with its `at` in UTC (see rows.in_utc), unless it names its own id."""
    if raw.get("id") is not None or not isinstance(raw.get("at"), str):
        return raw
    try:
        at = datetime.fromisoformat(raw["at"].replace("Z", "+00:00"))
    except ValueError:
        return raw  # the intake's check says what is wrong with it
    if at.tzinfo is None:
        return raw
    return {**raw, "at": at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")}


def _checked(line: str, spec: ImportMap, known: frozenset[str] | None) -> dict[str, Any]:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON: {err.msg}") from None
    if not isinstance(raw, dict):
        raise ValueError("not an event (a JSON object with `type`, `at` and `lead`)")
    if not raw.get("at"):
        raise ValueError("an event needs its time, `at` (an ISO time)")
    kind = raw.get("type")
    if kind in NOT_TAKEN:
        raise ValueError(f"a {kind!r} is made by the lead's own timer: not history")
    if isinstance(kind, str) and known is not None and kind not in known | SYSTEM_EVENTS | {OUTCOME}:
        raise ValueError(f"type: unknown event type {kind!r}")
    if kind == OUTCOME and (raw.get("data") or {}).get("outcome") not in OUTCOMES:
        raise ValueError(f"data.outcome: an outcome is {' or '.join(OUTCOMES)}")
    if kind == "signup" and isinstance(raw.get("data"), dict) and isinstance(raw["data"].get("source"), str):
        source = source_of(spec, raw["data"]["source"])
        raw["data"] = {**raw["data"], "source": source} if source else \
            {k: v for k, v in raw["data"].items() if k != "source"}
    lead_id = raw.pop("lead_id", None)
    if lead_id is None:
        try:
            return check_event(in_utc_raw(raw))
        except IntakeError as err:
            raise ValueError(str(err)) from None
    if not isinstance(lead_id, str) or not lead_id.strip():
        raise ValueError("lead_id: a lead's id, as `leadflow events export` writes it")
    event = validated(raw)
    return {**event.model_dump(mode="json", exclude_none=True), "lead_id": lead_id}
