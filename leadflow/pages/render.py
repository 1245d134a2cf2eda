"""What every page shares: the templates, a page rendered with the session's role, rep and CSRF
token, and how pages say times, timelines and charts."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from importlib import resources
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from leadflow.archive.events import EventArchive
from leadflow.db.database import Database

HERE = resources.files("leadflow.pages")
templates = Jinja2Templates(directory=str(HERE / "templates"))


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on its first form: every form of the session carries it."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return str(token)


def render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, template, {
        "role": request.session.get("role"), "me": request.session.get("rep"),
        "csrf": csrf_token(request), **values}, status_code=status)


def minute(iso: str) -> str:
    return iso.replace("T", " ")[:16] if iso else ""


def left(seconds: int | None) -> str:
    if seconds is None:
        return ""
    late = seconds < 0
    hours, rest = divmod(abs(seconds), 3600)
    text = f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m"
    return f"overdue by {text}" if late else f"{text} left"


def age(seconds: float | None) -> str:
    """How long something has been open: minutes, then hours, then days."""
    if seconds is None:
        return ""
    hours, minutes = divmod(max(0, int(seconds)) // 60, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def timeline(story: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for entry in reversed(story):
        when = entry.get("at", "")
        try:
            when = datetime.fromisoformat(when.replace("Z", "+00:00")).astimezone(timezone.utc)
            when = when.strftime("%Y-%m-%d %H:%M")
        except ValueError:
            pass
        out.append({**entry, "when": when, "moved": entry.get("from_state") != entry.get("to_state")})
    return out


ACTIVITY = 200  # the newest events a lead page lists


def activity(ledger: Database, lead: str) -> list[dict[str, Any]]:
    """What the lead did, newest first, at the times it happened (a visitor's page views from
    before it signed up among them): from the event archive, which keeps every event a lead took."""
    events = sorted(EventArchive(ledger).export(lead=lead), key=_moment)
    return [{"when": minute(str(e.get("at", ""))), "type": e["type"], "said": _said(e)}
            for e in reversed(events[-ACTIVITY:])]


def consent_of(profile: dict[str, Any]) -> dict[str, Any]:
    """What the lead agreed to, as its form recorded it (the profile's consent_* fields)."""
    return {k.removeprefix("consent_"): v for k, v in profile.items() if k.startswith("consent_")}


def _moment(event: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(event.get("at", "")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)


def _said(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    if event["type"] == "page_view":
        title = f"({data['title']})" if data.get("title") else ""
        utm = ", ".join(f"{k.removeprefix('utm_')} {v}" for k, v in data.items() if k.startswith("utm_"))
        return " ".join(x for x in (str(data.get("path", "")), title, utm and f"· {utm}") if x)
    if event["type"] in ("signup", "form_submit"):
        source = data.get("source") or (event.get("lead") or {}).get("source")
        return " · ".join(f"{k} {v}" for k, v in (("form", data.get("form")), ("source", source)) if v)
    return str(data.get("content") or data.get("path") or data.get("reason") or "")


def chart(points: list[list[Any]], width: int = 560, height: int = 140) -> dict[str, Any]:
    """Scores over time as SVG polylines (fit, intent and total), scaled to the box."""
    if len(points) < 2:
        return {"width": width, "height": height, "lines": [], "top": 0}
    top = max(max(p[1:]) for p in points) or 1
    step = width / (len(points) - 1)

    def line(column: int) -> str:
        return " ".join(f"{i * step:.1f},{height - (p[column] / top) * (height - 10) - 5:.1f}"
                        for i, p in enumerate(points))

    return {"width": width, "height": height, "top": round(top),
            "lines": [("fit", line(1)), ("intent", line(3)), ("total", line(4))],
            "first": points[0][0][:10], "last": points[-1][0][:10]}
