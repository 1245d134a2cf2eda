"""`leadflow policy shadow-report`: what the version in shadow made of the live events, beside
what the active version did, compared the way `policy diff` compares two simulated runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import and_, select

from leadflow.db.database import Database
from leadflow.db.schema import events, shadow_decisions
from leadflow.replay.diff import MAX_EXPLAINED, Result, changed, compared

Step = tuple[str, str, dict[str, Any], dict[str, Any]]  # event id, at (ISO), live brief, shadow brief


def steps_by_lead(ledger: Database, sha: str) -> dict[str, list[Step]]:
    """Each lead's recorded steps in the order it took them (first lead seen first)."""
    c = shadow_decisions.c
    query = (select(c.lead, c.event_id, c.at, c.live, c.shadow).where(c.sha == sha)
             .order_by(c.taken_at, c.lead, c.seq))
    leads: dict[str, list[Step]] = {}
    with ledger.engine.connect() as db:
        for row in db.execute(query):
            leads.setdefault(row.lead, []).append((row.event_id, _iso(row.at), json.loads(row.live),
                                                   json.loads(row.shadow)))
    return leads


def result_of(lead_id: str, steps: Iterator[tuple[str, str, dict[str, Any]]]) -> Result:
    """One side's run of a lead, in the shape `policy simulate` gives (leadflow.replay.simulate)."""
    r: Result = {"lead_id": lead_id, "email": None, "state": None, "path": [], "fired": [], "transitions": [],
                 "handoffs": [], "signup_at": None, "sales_ready_at": None, "events": 0, "skipped": 0,
                 "rejected": 0}
    for event_id, at, b in steps:
        r["events"] += 1
        if "error" in b or "rejected" in b:
            r["rejected"] += 1
            if "state" in b:
                r["state"] = b["state"]
            continue
        if not r["path"]:
            r["path"].append(b["before"])
            r["signup_at"] = at
        r["fired"].extend(b["fired"])
        r["transitions"].extend(b["transitions"])
        for t in b["transitions"]:
            to = t.rsplit(" -> ", 1)[1]
            r["path"].append(to)
            if to == "sales-ready" and r["sales_ready_at"] is None:
                r["sales_ready_at"] = at
        if "handoff" in b:
            r["handoffs"].append({"task": f"{lead_id}:{event_id}", "queue": b["handoff"], "at": at})
        r["state"] = b["state"]
    return r


def report(ledger: Database, sha: str, live_label: str, shadow_label: str) -> dict[str, Any]:
    leads = steps_by_lead(ledger, sha)
    live = [result_of(lead, ((e, at, lv) for e, at, lv, _ in steps)) for lead, steps in leads.items()]
    shadow = [result_of(lead, ((e, at, sh) for e, at, _, sh in steps)) for lead, steps in leads.items()]
    partings = []
    for a, b in changed(live, shadow)[:MAX_EXPLAINED]:
        partings.append(_parting(a, b, leads[a["lead_id"]]))
    emails = _emails(ledger, [p["lead_id"] for p in partings])
    for p in partings:
        p["email"] = emails.get(p["lead_id"])
    out = compared(live_label, shadow_label, live, shadow, partings)
    out["events"] = sum(len(s) for s in leads.values())
    return out


def _parting(a: Result, b: Result, steps: list[Step]) -> dict[str, Any]:
    for event_id, at, live, shadow in steps:
        if (live.get("state"), live.get("fired"), live.get("handoff")) != (
                shadow.get("state"), shadow.get("fired"), shadow.get("handoff")):
            lf, sf = live.get("fired", []), shadow.get("fired", [])
            return {"lead_id": a["lead_id"], "email": None, "old_state": a["state"], "new_state": b["state"],
                    "event_id": event_id, "event_type": live.get("type"), "at": at,
                    "old_fired": [f for f in lf if f not in sf], "new_fired": [f for f in sf if f not in lf]}
    return {"lead_id": a["lead_id"], "email": None, "old_state": a["state"], "new_state": b["state"],
            "event_id": None, "event_type": None, "at": None, "old_fired": [], "new_fired": []}


def _emails(ledger: Database, leads: list[str]) -> dict[str, str]:
    if not leads:
        return {}
    c = events.c
    found: dict[str, str] = {}
    with ledger.engine.connect() as db:
        for row in db.execute(select(c.lead, c.body).where(and_(c.lead.in_(leads), c.type == "signup"))):
            email = json.loads(row.body).get("lead", {}).get("email")
            if email:
                found.setdefault(row.lead, email)
    return found


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")
