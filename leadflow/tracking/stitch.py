"""A visitor becomes a lead: a form posted with its visitor id, a click from a nurture e-mail,
or `leadflow.identify(email)` in the page. Its anonymous page views go to the lead with their
own times (the lead's activity shows them before the sign-up), and where the lead came from
(the first touch: leadflow.tracking.source) becomes its source, unless the sign-up names one."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from leadflow.db.database import Database
from leadflow.tracking.source import first_touch, utm_of
from leadflow.tracking.visitors import visitors_of
from rules.identity import with_id
from rules.models import Event

VISITOR = re.compile(r"^[A-Za-z0-9_-]{16,64}$")  # what c.js makes: 22 characters of base64url
STITCHING = frozenset({"signup", "form_submit"})


def visitor_of(event: dict[str, Any]) -> str | None:
    visitor = (event.get("data") or {}).get("visitor_id")
    return visitor if isinstance(visitor, str) and VISITOR.match(visitor) else None


def ref_of(lead: dict[str, Any]) -> dict[str, str]:
    """How events name the lead: its e-mail, else its external id."""
    return {"email": lead["email"]} if lead.get("email") else {"external_id": str(lead.get("external_id"))}


def page_view(ref: dict[str, str], at: float, body: dict[str, Any], visitor: str) -> dict[str, Any]:
    """A page view as its lead takes it (an id from its content: the same view is one event)."""
    data = {k: v for k, v in body.items() if k != "utm"}
    data.update(body.get("utm") or {})
    raw = {"type": "page_view", "at": datetime.fromtimestamp(at, timezone.utc).isoformat(),
           "lead": ref, "data": {**data, "visitor_id": visitor}}
    return with_id(Event.model_validate(raw)).model_dump(mode="json", exclude_none=True)


def touches(event: dict[str, Any]) -> bool:
    """The event may name a visitor, or its sign-up say where it came from (stitch has work)."""
    data = event.get("data") or {}
    return visitor_of(event) is not None or (event["type"] == "signup" and "utm_source=" in _page_of(data))


def _page_of(data: dict[str, Any]) -> str:
    page = data.get("page") or (data.get("consent") or {}).get("page")
    return page if isinstance(page, str) else ""


def stitch(ledger: Database, event: dict[str, Any], key: str, now: float, own: frozenset[str] = frozenset()
           ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The event, with the lead's source on a sign-up that names none, and the anonymous page
    views of the visitor it names (a sign-up, a form) to send its lead after it. The source is the
    first touch: the visitor's first view, else the page the sign-up was made on. Only a sign-up
    sets it: a later form from another device is no first touch."""
    lead, data = event["lead"], event.get("data") or {}
    visitor = visitor_of(event)
    views: list[tuple[float, dict[str, Any]]] = []
    if visitor is not None and event["type"] in STITCHING:
        views = visitors_of(ledger).name(visitor, key, ref_of(lead), now)
    out = [page_view(ref_of(lead), at, body, str(visitor)) for at, body in views]
    if event["type"] != "signup" or lead.get("source") or data.get("source"):
        return event, out
    if views:
        touch = first_touch(views[0][1], own)
    elif utm_of(_page_of(data)).get("utm_source"):  # no view kept: the form's own page, if it says
        touch = first_touch({"utm": utm_of(_page_of(data))}, own)
    else:
        return event, out
    return {**event, "lead": {**lead, **touch}, "data": {**data, "source": touch["source"]}}, out
