"""Pages for people, rendered on the server (Jinja2, no JavaScript, nothing fetched from outside):
the sales inbox, a task with the lead's story, leads by state and a lead's timeline, the sales
roster; for ops the deliveries; and the e-mail `make up`'s local SMTP sink caught.

A person logs in with an API key; the session cookie is signed and holds the role (and the
roster rep the key names), never the key. Every form carries a CSRF token bound to the session."""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from datetime import datetime, timezone
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from leadflow.api.context import Context
from leadflow.db.database import STATUSES
from leadflow.delivery import sink
from leadflow.intake import IntakeError, aliases_for, check_event, deliver
from leadflow.keys import allowed
from leadflow.logins import LOGINS
from leadflow.operations import leads as lead_ops
from leadflow.operations import roster as roster_ops
from leadflow.operations import tasks as task_ops
from leadflow.operations.deliveries import KINDS, BadFilter, listing

_here = resources.files("leadflow.pages")
FormText = Annotated[str, Form(max_length=2000)]
log = logging.getLogger("leadflow.pages")
templates = Jinja2Templates(directory=str(_here / "templates"))
PAGE_ROLES = ("sales", "ops", "admin")


def mount(app: FastAPI, secret: str, secure: bool = False) -> None:
    """The pages on `app`, their sessions signed with `secret`; `secure`: the site is reached over
    https (LEADFLOW_PUBLIC_URL), so the cookie never travels in the clear."""
    app.add_middleware(SessionMiddleware, secret_key=secret, session_cookie="leadflow_session",
                       same_site="strict", max_age=12 * 3600, https_only=secure)
    app.mount("/static", StaticFiles(directory=str(_here / "static")), name="static")
    for path, endpoint, methods in ROUTES:
        app.add_api_route(path, endpoint, methods=methods, include_in_schema=False,
                          response_class=HTMLResponse)


# -- session, role, CSRF ---------------------------------------------------------------------


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


def _csrf(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return token


def _check_csrf(request: Request, sent: str) -> None:
    if not hmac.compare_digest(sent.encode(), _csrf(request).encode()):
        raise HTTPException(403, "the form is stale or not ours (CSRF token); reload the page")


def _form_role(request: Request, csrf: str, permission: str, what: str) -> str:
    """The session's role for a form that needs `permission`: no session raises _Login; a forged
    form (CSRF) or a role without the permission is a 403."""
    role = _role(request)
    _check_csrf(request, csrf)
    if not allowed(role, permission):
        raise HTTPException(403, f"the {role} role may not {what}")
    return role


class _Login(Exception):
    pass


def _role(request: Request) -> str:
    role = session_role(request)
    if role not in PAGE_ROLES:
        raise _Login()
    return role


def session_role(request: Request) -> str | None:
    """The role of the page session, while the key it was opened with is still one of the keys:
    removing a key ends its sessions at their next request, not 12 hours later."""
    if "session" not in request.scope:
        return None
    role = request.session.get("role")
    if role is None:
        return None
    holder = _ctx(request).keys.holder_of_fingerprint(request.session.get("key", ""))
    if holder is None or holder[0] != role:
        request.session.clear()
        return None
    return str(role)


def _page(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, template, {
        "role": request.session.get("role"), "me": request.session.get("rep"), "csrf": _csrf(request),
        **values}, status_code=status)


def _login_first(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


# -- login -----------------------------------------------------------------------------------


async def login_form(request: Request, next: str = "/inbox") -> HTMLResponse:
    return _page(request, "login.html", next=_local(next), error=None)


async def login(request: Request, key: FormText = "", csrf: FormText = "", next: FormText = "/inbox"
                ) -> Response:
    _check_csrf(request, csrf)
    client = request.client.host if request.client else "?"
    wait = LOGINS.wait(client)
    if wait:
        log.warning("login refused: too many failed logins from %s", client)
        refused = _page(request, "login.html", status=429, next=_local(next),
                        error=f"Too many failed logins from here; try again in {wait} s.")
        refused.headers["Retry-After"] = str(wait)
        return refused
    keys = _ctx(request).keys
    role, person = keys.holder_of(key.strip()) or (None, None)
    if role not in PAGE_ROLES:
        LOGINS.failed(client)
        log.warning("failed login from %s: %s", client, "unknown key" if role is None else f"{role} key")
        error = "That key is not known here." if role is None else f"The {role} role has no pages."
        return _page(request, "login.html", status=401 if role is None else 403, next=_local(next),
                     error=error)
    request.session.clear()  # a new session for the new role
    request.session["role"] = role
    request.session["key"] = keys.fingerprint(key.strip())
    if person:  # the key says who holds it: the inbox does not ask
        request.session["rep"] = person
        request.session["rep_from_key"] = True
    return RedirectResponse(_local(next), status_code=303)


async def logout(request: Request, csrf: FormText = "") -> Response:
    _check_csrf(request, csrf)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


def _local(path: str) -> str:
    """Only paths of this site (no open redirect)."""
    return path if path.startswith("/") and not path.startswith("//") else "/inbox"


# -- sales -----------------------------------------------------------------------------------


async def home(request: Request) -> Response:
    return RedirectResponse("/inbox", status_code=303)


async def inbox(request: Request, queue: str = "") -> Response:
    """My tasks (the session's rep holds them), the tasks of my queues waiting for a free rep,
    then every other open task."""
    try:
        role = _role(request)
    except _Login:
        return _login_first(request)
    ctx = _ctx(request)
    rows = await task_ops.assigned_tasks(ctx.client, ctx.desk)
    roster = await asyncio.to_thread(ctx.desk.roster)
    me = request.session.get("rep")
    my_rep = roster.rep(me) if me else None
    queues = sorted({r.get("LeadflowQueue") or "?" for r in rows})
    details = []
    for row in rows:
        if queue and row.get("LeadflowQueue") != queue:
            continue
        try:
            found = await task_ops.task(ctx.client, row["id"])
        except task_ops.NoSuchTask:
            continue
        details.append({**found, "rep": row["rep"], "assignment": row["assignment"]})
    details.sort(key=lambda t: t.get("due_at") or "9999")
    for t in details:
        t["left"] = _left(t.get("seconds_left"))
        t["name"] = ((t.get("lead_story") or {}).get("profile") or {}).get("name") or t.get("lead_email")
        held_by = roster.rep(t["rep"]) if t["rep"] else None
        t["rep_name"] = t.get("rep_name") or (held_by.name if held_by and held_by.name else t["rep"])
    mine = [t for t in details if me and t["rep"] == me]
    # without a rep, every queue is "mine" to look at: nobody else will see these tasks wait
    unassigned = [t for t in details if t["assignment"] == "waiting"
                  and (my_rep is None or t.get("queue") in my_rep.queues)]
    shown = {t["id"] for t in mine + unassigned}
    return _page(request, "inbox.html", mine=mine, unassigned=unassigned,
                 tasks=[t for t in details if t["id"] not in shown], queues=queues, queue=queue,
                 works=allowed(role, "work_tasks"), my_rep=my_rep, reps=roster.reps,
                 asks_who=not request.session.get("rep_from_key"))


async def choose_rep(request: Request, csrf: FormText = "", rep: FormText = "") -> Response:
    """The inbox's "I am": who the session's person is, when their key does not say."""
    try:
        _role(request)
    except _Login:
        return _login_first(request)
    _check_csrf(request, csrf)
    if request.session.get("rep_from_key"):
        raise HTTPException(403, "your key says who you are")
    rep = rep.strip()
    if rep and (await asyncio.to_thread(_ctx(request).desk.roster)).rep(rep) is None:
        raise HTTPException(422, f"no rep {rep!r} in the roster")
    if rep:
        request.session["rep"] = rep
    else:
        request.session.pop("rep", None)
    return RedirectResponse("/inbox", status_code=303)


async def task_page(request: Request, task_id: str) -> Response:
    try:
        role = _role(request)
    except _Login:
        return _login_first(request)
    return await _task_view(request, task_id, role)


async def _task_view(request: Request, task_id: str, role: str, error: str | None = None,
                     status: int = 200) -> Response:
    ctx = _ctx(request)
    try:
        task = await task_ops.task(ctx.client, task_id)
    except task_ops.NoSuchTask:
        return _page(request, "missing.html", status=404, what=f"task {task_id}")
    lead = await lead_ops.lead(ctx.client, task["lead_workflow_id"]) if task.get("lead_workflow_id") else None
    task["left"] = _left(task.get("seconds_left"))
    return _page(request, "task.html", status=status, task=task, lead=lead, error=error,
                 story=_timeline((lead or {}).get("story") or task["lead_story"].get("story", [])),
                 works=allowed(role, "work_tasks") and task["status"] in ("open", "escalated"))


async def answer_task(request: Request, task_id: str, action: str, csrf: str, reason: str, by: str,
                      queue: str) -> Response:
    try:
        role = _form_role(request, csrf, "work_tasks", "work tasks")
    except _Login:
        return _login_first(request)
    client = _ctx(request).client
    # a key that names its person answers as that person, whatever the form says
    by = (request.session.get("rep") if request.session.get("rep_from_key") else None) \
        or by.strip() or request.session.get("rep") or ""
    try:
        if action == "accept":
            await task_ops.accept(client, task_id, by)
        elif action == "reject":
            await task_ops.reject(client, task_id, reason, by)
        elif action == "reassign":
            await task_ops.reassign(client, task_id, queue.strip(), by)
        else:
            raise HTTPException(404, f"no action {action!r}")
    except (task_ops.TaskError, IntakeError) as err:
        return await _task_view(request, task_id, role, error=str(err), status=422)
    except task_ops.NoSuchTask:
        return _page(request, "missing.html", status=404, what=f"task {task_id}")
    return RedirectResponse(f"/tasks/{task_id}", status_code=303)


# -- the roster ------------------------------------------------------------------------------


async def roster_page(request: Request) -> Response:
    if (refused := _ops_page(request, "read_tasks", "the roster")) is not None:
        return refused
    return await _roster_view(request)


async def _roster_view(request: Request, error: str | None = None, status: int = 200) -> Response:
    view = await asyncio.to_thread(roster_ops.view, _ctx(request).desk)
    for rep in view["reps"]:
        away = rep["away"] or {}
        rep["away_from"], rep["away_until"] = away.get("from") or "", away.get("until") or ""
        rep["from_shown"], rep["until_shown"] = _minute(rep["away_from"]), _minute(rep["away_until"])
    return _page(request, "roster.html", status=status, view=view, error=error,
                 manages=allowed(request.session.get("role"), "manage_roster"))


async def change_rep(request: Request, rep_id: str, csrf: FormText = "", capacity: FormText = "",
                     away_from: FormText = "", away_until: FormText = "", action: FormText = "save"
                     ) -> Response:
    """A rep's capacity and time away, as the form shows them: empty away fields (or "Back")
    mean not away."""
    try:
        role = _form_role(request, csrf, "manage_roster", "change the roster")
    except _Login:
        return _login_first(request)
    desk = _ctx(request).desk
    rep = (await asyncio.to_thread(desk.roster)).rep(rep_id)
    if rep is None:
        return _page(request, "missing.html", status=404, what=f"rep {rep_id}")
    ends = {"from": away_from.strip() or None, "until": away_until.strip() or None}
    away = None if action == "back" or not any(ends.values()) else ends
    try:
        new = roster_ops.changed(rep, {"capacity": capacity.strip(), "away": away})
    except roster_ops.ChangeRefused as err:
        return await _roster_view(request, error=f"{rep_id}: {err}", status=422)
    await asyncio.to_thread(desk.put_rep, new, request.session.get("rep") or f"page ({role})")
    await roster_ops.wake_waiting(_ctx(request).client, desk)
    return RedirectResponse("/roster", status_code=303)


# -- leads -----------------------------------------------------------------------------------


async def leads_page(request: Request, state: str = "") -> Response:
    try:
        _role(request)
    except _Login:
        return _login_first(request)
    try:
        rows, _ = await lead_ops.leads(_ctx(request).client, state or None, limit=200)
    except IntakeError as err:
        return _page(request, "leads.html", status=422, leads=[], state=state, error=str(err))
    return _page(request, "leads.html", leads=rows, state=state, error=None,
                 states=_ctx(request).store.active().policy.states)


async def lead_page(request: Request, lead: str) -> Response:
    try:
        _role(request)
    except _Login:
        return _login_first(request)
    return await _lead_view(request, lead)


async def _lead_view(request: Request, lead: str, error: str | None = None, status: int = 200) -> Response:
    try:
        aliases = await asyncio.to_thread(aliases_for, _ctx(request).settings)  # the database: off the loop
        found = await lead_ops.lead(_ctx(request).client, lead, aliases)
    except IntakeError:
        found = None
    if found is None:
        return _page(request, "missing.html", status=404, what=f"lead {lead}")
    return _page(request, "lead.html", status=status, lead=found, story=_timeline(found.get("story", [])),
                 chart=_chart(found.get("score_history", [])), error=error,
                 merges=allowed(_role(request), "merge_leads"))


async def identify_lead(request: Request, lead: str, csrf: FormText = "", same_as: FormText = "") -> Response:
    """A person says this lead is also someone known by another address or id: an `identify`
    event through the intake, as a form or the CRM would send it; the lead page shows the one
    lead that remains."""
    try:
        role = _form_role(request, csrf, "merge_leads", "merge leads")
    except _Login:
        return _login_first(request)
    ctx = _ctx(request)
    found = await lead_ops.lead(ctx.client, lead, await asyncio.to_thread(aliases_for, ctx.settings))
    if found is None:
        return _page(request, "missing.html", status=404, what=f"lead {lead}")
    other = same_as.strip()
    mine = {k: v for k, v in (found.get("profile") or {}).items() if k in ("email", "external_id") and v}
    event = {"type": "identify", "lead": mine,
             "data": {"same_as": {"email" if "@" in other else "external_id": other},
                      "source": "page", "by": request.session.get("rep") or role}}
    try:
        reached = await deliver(ctx.client, ctx.settings, check_event(event), door="page")
    except IntakeError as err:
        return await _lead_view(request, lead, error=str(err).removeprefix("bad event: "), status=422)
    return RedirectResponse(f"/leads/{reached}", status_code=303)


# -- deliveries and mail ---------------------------------------------------------------------


def _ops_page(request: Request, permission: str, what: str) -> Response | None:
    """The login page, or a refusal, unless the session's role may see `what`; None when it may."""
    try:
        role = _role(request)
    except _Login:
        return _login_first(request)
    if not allowed(role, permission):
        return _page(request, "missing.html", status=403,
                     message=f"The {role} role does not see {what}; ops does.")
    return None


async def deliveries_page(request: Request, status: str = "", kind: str = "", lead: str = "") -> Response:
    if (refused := _ops_page(request, "read_deliveries", "deliveries")) is not None:
        return refused
    ctx = _ctx(request)
    error = None
    try:
        key = lead_ops.lead_id(lead) if lead.strip() else None
        rows = await asyncio.to_thread(listing, ctx.ledger, lead=key, status=status or None,
                                       kind=kind or None, limit=500)
    except (BadFilter, ValueError) as err:
        rows, error = [], str(err)
    counts = await asyncio.to_thread(ctx.ledger.counts)
    return _page(request, "deliveries.html", status=422 if error else 200, rows=rows, error=error,
                 counts=counts, status_=status, kind=kind, lead=lead, statuses=STATUSES, kinds=KINDS)


async def funnel_page(request: Request, by: str = "version", since: str = "", until: str = "") -> Response:
    """The funnel report for ops: the same page `leadflow report funnel --out` writes."""
    if (refused := _ops_page(request, "read_policies", "the funnel")) is not None:
        return refused
    from leadflow.reports.funnel import body, charts, funnel, load

    error = None
    try:
        window = [_moment(text, name) for text, name in ((since, "since"), (until, "until"))]
    except ValueError as err:
        window, error = [None, None], str(err)
    grouping = "week" if by == "week" else "version"

    def build() -> str:
        figures = funnel(load(_ctx(request).ledger, *window), grouping)  # type: ignore[arg-type]
        return body(figures, charts(figures) if figures["leads"] else {})

    return _page(request, "funnel.html", status=422 if error else 200, error=error, by=grouping,
                 since=since, until=until, report=await asyncio.to_thread(build))


def _moment(text: str, name: str) -> datetime | None:
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a date (2026-03-01)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


async def mail_page(request: Request) -> Response:
    try:
        _role(request)
    except _Login:
        return _login_first(request)
    ctx = _ctx(request)
    found = await asyncio.to_thread(sink.messages, ctx.settings.mail_dir, 200)
    return _page(request, "mail.html", messages=found, directory=ctx.settings.mail_dir,
                 smtp=ctx.settings.smtp_host)


async def mail_message_page(request: Request, message_id: str) -> Response:
    try:
        _role(request)
    except _Login:
        return _login_first(request)
    found = await asyncio.to_thread(sink.message, _ctx(request).settings.mail_dir, message_id)
    if found is None:
        return _page(request, "missing.html", status=404, what=f"message {message_id}")
    return _page(request, "mail_message.html", msg=found)


# -- helpers ---------------------------------------------------------------------------------


def _minute(iso: str) -> str:
    return iso.replace("T", " ")[:16] if iso else ""


def _left(seconds: int | None) -> str:
    if seconds is None:
        return ""
    late = seconds < 0
    hours, rest = divmod(abs(seconds), 3600)
    text = f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m"
    return f"overdue by {text}" if late else f"{text} left"


def _timeline(story: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


def _chart(points: list[list[Any]], width: int = 560, height: int = 140) -> dict[str, Any]:
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


async def _answer(request: Request, task_id: str, csrf: FormText = "", reason: FormText = "",
                  by: FormText = "", queue: FormText = "") -> Response:
    action = request.url.path.rsplit("/", 1)[1]
    return await answer_task(request, task_id, action, csrf, reason, by, queue)


ROUTES = [
    ("/", home, ["GET"]),
    ("/login", login_form, ["GET"]),
    ("/login", login, ["POST"]),
    ("/logout", logout, ["POST"]),
    ("/inbox", inbox, ["GET"]),
    ("/inbox/me", choose_rep, ["POST"]),
    ("/tasks/{task_id}", task_page, ["GET"]),
    ("/tasks/{task_id}/accept", _answer, ["POST"]),
    ("/tasks/{task_id}/reject", _answer, ["POST"]),
    ("/tasks/{task_id}/reassign", _answer, ["POST"]),
    ("/roster", roster_page, ["GET"]),
    ("/roster/{rep_id}", change_rep, ["POST"]),
    ("/leads", leads_page, ["GET"]),
    ("/leads/{lead}", lead_page, ["GET"]),
    ("/leads/{lead}/identify", identify_lead, ["POST"]),
    ("/deliveries", deliveries_page, ["GET"]),
    ("/funnel", funnel_page, ["GET"]),
    ("/mail", mail_page, ["GET"]),
    ("/mail/{message_id}", mail_message_page, ["GET"]),
]
