"""Everything leadflow holds about a person, as one JSON document: what the lead's workflow knows
(profile, state, scores over time, facts, the story with each line's rule and policy version,
consents, aliases), and what the shared database keeps of each of their lead ids (every archived
event, the funnel's transitions, deliveries with their status, suppressions of their addresses,
how earlier runs ended, merges, stitched visitors), and their hand-off tasks with the answers.

The CLI (`leadflow person export`) and the API (`GET /v1/people/{lead}/export`) write this same
document. `schema` names its shape; a field added later is a new key, never a changed one."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from sqlalchemy import select
from temporalio.client import Client
from temporalio.service import RPCError

from leadflow.archive.events import EventArchive
from leadflow.db.database import Database
from leadflow.db.schema import endings, lead_aliases, mail_reports, task_assignments, transitions, visitors
from leadflow.people import runs
from leadflow.people.person import Person, find
from rules.evaluate import iso

SCHEMA = "leadflow.person/1"
DELIVERIES = 10_000  # per lead id: far more than any policy sends one person


async def export(client: Client, ledger: Database, who: str) -> dict[str, Any]:
    """The document for the person `who` names (e-mail, external id or lead id). Raises
    leadflow.people.person.NoSuchPerson when leadflow holds nothing of them."""
    person = await find(client, ledger, who)
    tasks = await runs.task_ids(client, ledger, person.leads)
    handoffs = [await _task(client, task) for task in tasks]
    stored = await asyncio.to_thread(_stored, ledger, person)
    view = person.view or {}
    profile = view.get("profile") or {}
    return {
        "schema": SCHEMA,
        "exported_at": iso(time.time()),
        "lead_id": person.lead,
        "lead_ids": person.leads,
        "emails": sorted(person.addresses),
        "external_ids": sorted(person.external_ids),
        "profile": profile,
        # the profile's consent flag and what the form recorded beside it (leadflow.forms.record)
        "consents": {k.removeprefix("consent_"): v for k, v in profile.items()
                     if k == "consent" or k.startswith("consent_")},
        "lead": {k: view.get(k) for k in ("state", "policy", "version", "scores", "facts", "bant", "track",
                                          "open_handoff", "events", "rejected", "runs", "final_since")}
        if view else None,
        "story": view.get("story") or [],
        "story_dropped": view.get("story_dropped", 0),
        "scores_over_time": [dict(zip(("at", "fit", "interest", "intent", "total"), point, strict=False))
                             for point in view.get("score_history") or []],
        "aliases": view.get("aliases") or [],
        "handoffs": handoffs,
        **stored,
    }


async def _task(client: Client, task: str) -> dict[str, Any]:
    """The task as its workflow knows it (answers, log); its id alone if it no longer answers."""
    try:
        view = await client.get_workflow_handle(task).query("task")
    except RPCError:
        return {"id": task}
    return dict(view) if isinstance(view, dict) else {"id": task, "task": view}


def _stored(ledger: Database, person: Person) -> dict[str, Any]:
    leads = person.leads
    archive = EventArchive(ledger)
    found = [event for lead in leads for event in archive.export(lead=lead)]
    found.sort(key=lambda e: str(e.get("at") or ""))
    t, a, v, r, e = transitions.c, lead_aliases.c, visitors.c, task_assignments.c, endings.c
    with ledger.engine.connect() as db:
        ended = [json.loads(body) for body in db.execute(
            select(e.body).where(e.lead.in_(leads)).order_by(e.ended_at)).scalars()]
        moves = [dict(row._mapping) | {"at": iso(row.at)} for row in db.execute(
            select(transitions).where(t.lead.in_(leads)).order_by(t.at, t.seq))]
        merges = [dict(row._mapping) | {"at": iso(row.at)} for row in db.execute(
            select(lead_aliases).where(a.alias.in_(leads) | a.lead.in_(leads)).order_by(a.at))]
        seen = [{"visitor": row.id, "first_at": iso(row.first_at), "last_at": iso(row.last_at),
                 "lead": row.lead} for row in db.execute(select(visitors).where(v.lead.in_(leads)))]
        reports = [dict(row._mapping) | {"at": iso(row.at)} for row in db.execute(
            select(mail_reports).where(mail_reports.c.lead.in_(leads)).order_by(mail_reports.c.at))]
        routed = [{k: (iso(val) if k.endswith("_at") and isinstance(val, float) else val)
                   for k, val in row._mapping.items()}
                  for row in db.execute(select(task_assignments).where(r.lead.in_(leads)))]
    sent = [_delivery(row) for lead in leads for row in ledger.list(lead=lead, limit=DELIVERIES)]
    sent.sort(key=lambda d: d["created_at"] or "")
    return {
        "events": found,
        "transitions": moves,
        "deliveries": sent,
        "mail_reports": reports,
        "suppressions": {address: ledger.suppressed(address) for address in sorted(person.addresses)},
        "endings": ended,
        "merges": merges,
        "visitors": seen,
        "assignments": routed,
    }


def _delivery(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in ("key", "kind", "lead", "target", "subject", "status", "detail", "attempts",
                               "message_id")}
    for moment in ("created_at", "updated_at", "sent_at"):
        out[moment] = iso(row[moment]) if row.get(moment) else None
    return out
