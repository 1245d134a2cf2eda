"""Marketing's forms (forms/*.yaml): the hosted page GET /f/{form}, the plain HTML POST to
/f/{form} from that page or from any site of LEADFLOW_SITES (leadflow.api.sites refuses other
origins before a request gets here), and double opt-in's link GET /f/{form}/confirm?t=...

A POST is judged for bots first (leadflow.forms.guard) and a bot's is answered as a good submit
would be; then its fields are read (a bad one: 422, the form again with the error beside the
field and everything typed in it); then it becomes its lead's event through the intake, as an
intake key's would."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect
from temporalio.service import RPCError

from leadflow.api.context import Context
from leadflow.api.limits import Limiter
from leadflow.db.database import address_hash
from leadflow.forms import record, submit
from leadflow.forms.guard import Guard
from leadflow.forms.model import Form
from leadflow.forms.optin import BadToken, OptIn
from leadflow.forms.store import FormStore
from leadflow.intake import IntakeError, deliver, route, send_events
from leadflow.ops import metrics
from leadflow.pages.render import templates
from leadflow.temporal import described
from rules.identity import lead_key
from rules.models import LeadRef

log = logging.getLogger("leadflow.forms")
router = APIRouter(include_in_schema=False)
# a form's POST: 20 fields of 1,000 characters percent-encoded fit many times over; a field far
# over its length still comes back in the page with its error, as typed
MAX_BODY = 1024 * 1024
NO_STORE = {"Cache-Control": "no-store, private"}
# confirmation e-mails per lead: three, then one every ten minutes, whoever asks for them (a
# stranger typing someone's address again and again floods nobody's inbox)
CONFIRMATIONS = (1 / 600, 3)


@dataclass
class Forms:
    """What the form routes keep for the app's life (made at its first form request)."""

    store: FormStore
    guard: Guard
    optin: OptIn
    confirmations: Limiter


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def _forms(request: Request) -> Forms:
    state = request.app.state
    if getattr(state, "forms", None) is None:
        ctx = _ctx(request)
        state.forms = Forms(FormStore(ctx.settings.forms_dir), Guard(), OptIn(ctx.settings, ctx.ledger),
                            Limiter(*CONFIRMATIONS))
    forms: Forms = state.forms
    return forms


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- pages -----------------------------------------------------------------------------------


def _page(request: Request, form: Form, *, values: dict[str, Any] | None = None,
          errors: dict[str, str] | None = None, problem: str = "", status: int = 200,
          page: str = "", visitor: str = "", sent: bool = False) -> HTMLResponse:
    """The form's page; `sent`: again, after a submit it could not take, when the person has
    filled it once already: its fill time is behind them, and a quick fix of one field must
    not read as a bot's speed."""
    public = _ctx(request).settings.public
    started = time.time() * 1000 - (form.min_fill_seconds * 1000 + 1 if sent else 0)
    return templates.TemplateResponse(request, "form.html", {
        "form": form, "values": values or {}, "errors": errors or {}, "problem": problem, "public": public,
        "action": f"{public}/f/{form.name}", "started": int(started),
        "page": page or _own_url(request, form), "visitor": visitor,
    }, status_code=status, headers=NO_STORE)


def _own_url(request: Request, form: Form) -> str:
    query = request.url.query
    return f"{_ctx(request).settings.public}/f/{form.name}" + (f"?{query}" if query else "")


def _message(request: Request, title: str, *lines: str, status: int = 200, bad: bool = False,
             again: str = "") -> HTMLResponse:
    return templates.TemplateResponse(request, "form_message.html", {
        "title": title, "lines": lines, "bad": bad, "again": again,
        "public": _ctx(request).settings.public}, status_code=status, headers=NO_STORE)


def _missing(request: Request) -> HTMLResponse:
    return _message(request, "No such form", "This form is not here (any more).", status=404, bad=True)


def _thanks(request: Request, form: Form) -> Response:
    """What a submit gets, good or a bot's alike."""
    if form.redirect:
        return RedirectResponse(form.redirect, status_code=303, headers=NO_STORE)
    lines = [form.thanks_message]
    if form.double_opt_in:
        lines.append("We have sent you an e-mail: follow the link in it to confirm your address.")
    return _message(request, form.title, *lines)


# -- the form --------------------------------------------------------------------------------


async def show(request: Request, form: str) -> Response:
    found = _forms(request).store.get(form)
    if found is None:
        return _missing(request)
    return _page(request, found)


async def _posted(request: Request) -> dict[str, str] | Response:
    """The POST's fields (the last of a repeated name), or the answer to a body that is none."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        return Response(status_code=413)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return Response(status_code=413)
    except ClientDisconnect:
        return Response(status_code=400)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        text = body.decode("latin-1")  # percent-escaped: the bytes are ASCII, or taken as they are
        try:
            return dict(parse_qsl(text, keep_blank_values=True, errors="strict"))
        except UnicodeDecodeError:
            # a page in Latin-1 or Windows-1252 posts its form so (no accept-charset="UTF-8"):
            # the person's "José" is read as they typed it, not as a replacement mark
            return dict(parse_qsl(text, keep_blank_values=True, encoding="cp1252", errors="replace"))
    if kind == "multipart/form-data":
        return await _multipart(request, bytes(body))
    return Response(status_code=415)


async def _multipart(request: Request, body: bytes) -> dict[str, str] | Response:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        parsed = await Request(request.scope, receive).form(max_files=5, max_fields=200)
    except Exception:  # the parser's errors are many kinds; every one is a body that is no form
        return Response(status_code=400)
    # a file is nothing a form here asks for: left out
    return {k: v for k, v in parsed.multi_items() if not isinstance(v, UploadFile)}


async def take(request: Request, form: str) -> Response:
    found = _forms(request).store.get(form)
    if found is None:
        return _missing(request)
    posted = await _posted(request)
    if isinstance(posted, Response):
        if posted.status_code == 413:
            return _page(request, found, status=413, sent=True,
                         problem="What you sent is too large to take. Please shorten the longer fields.")
        return _page(request, found, status=posted.status_code, sent=True,
                     problem="Your browser sent something this form cannot read. Please try again.")
    address = request.client.host if request.client else ""
    refusal = _forms(request).guard.refuse(found, posted, address)
    if refusal is not None:
        metrics.count("leadflow_form_refused", "Form submits refused quietly as a bot's, by form and reason",
                      {"form": found.name, "reason": refusal})
        log.info("form %s: a submit refused quietly (%s)", found.name, refusal)
        return _thanks(request, found)
    page = record.page_of(posted.get("lf_page", "")) or record.page_of(request.headers.get("referer", ""))
    visitor = record.visitor_of(posted.get("lf_visitor", ""))
    sub = submit.read(found, posted)
    if sub.errors:
        return _page(request, found, values=sub.typed, errors=sub.errors, status=422, page=page,
                     visitor=visitor, sent=True)
    try:
        return await _send(request, found, sub, page=page, visitor=visitor)
    except (RPCError, DBAPIError, PoolTimeout) as err:
        log.warning("form %s: a submit not taken, the service did not answer: %s", found.name,
                    type(err).__name__)
        return _page(request, found, values=sub.typed, status=503, page=page, visitor=visitor, sent=True,
                     problem="We could not take this just now. Please send it again in a moment.")


async def _send(request: Request, form: Form, sub: submit.Submission, *, page: str, visitor: str) -> Response:
    ctx, forms = _ctx(request), _forms(request)
    email = str(sub.profile["email"])
    key = lead_key(LeadRef(email=email))
    known = await _exists(request, key)
    kind = "form_submit" if known else "signup"
    held = form.double_opt_in and not known and sub.consented
    if held:  # before the lead exists: its first e-mail already meets the suppression
        await asyncio.to_thread(forms.optin.hold, email, key, form)
    event = record.submit_event(form, sub, kind=kind, at=_now(), page=page, visitor=visitor)
    (result,) = await send_events(ctx.client, ctx.settings, ctx.store, ctx.seen, [event], door="form",
                                  role="intake")
    if result.status == "refused":
        if held:
            await asyncio.to_thread(forms.optin.release, address_hash(email))
        log.warning("form %s: a submit refused by the intake: %s", form.name, result.error)
        return _page(request, form, values=sub.typed, status=422, page=page, visitor=visitor, sent=True,
                     problem="We could not take this as it is. Please check what you typed and send it "
                             "again.")
    lead = result.lead_id or key
    metrics.count("leadflow_form_submits", "Form submits taken, by form and the event they became",
                  {"form": form.name, "event": kind})
    if form.double_opt_in and sub.consented:
        if forms.confirmations.allow(lead):
            status = await asyncio.to_thread(forms.optin.send, form, to=email, lead=lead,
                                             key=f"form-confirm:{form.name}:{lead}:{result.event_id}")
            log.info("form %s: confirmation e-mail for lead %s: %s", form.name, lead, status,
                     extra={"lead_id": lead})
        else:
            log.info("form %s: no confirmation e-mail for lead %s: over its rate", form.name, lead,
                     extra={"lead_id": lead})
    return _thanks(request, form)


async def _exists(request: Request, key: str) -> bool:
    """Whether the person is a lead already (running, or ended and kept): a submit then is its
    `form_submit` (a derailed lead is re-engaged by one), else a `signup` starts it."""
    ctx = _ctx(request)
    target, _ = await route(ctx.client, ctx.settings, {"type": "form_submit"}, key)
    return await described(ctx.client, target) is not None


# -- double opt-in's link ----------------------------------------------------------------------


async def confirm(request: Request, form: str, t: str = "") -> Response:
    found = _forms(request).store.get(form)
    if found is None:
        return _missing(request)
    forms, ctx = _forms(request), _ctx(request)
    try:
        pending = forms.optin.read(found, t)
    except BadToken as err:
        if str(err) == "expired":
            return _message(request, "This link has expired", "Please fill in the form again.", status=410,
                            bad=True, again=f"{ctx.settings.public}/f/{found.name}")
        return _message(request, "This link is not valid",
                        "The confirmation link was changed or is not one of ours. Use the link from the "
                        "e-mail itself.", status=400, bad=True)
    if request.method == "HEAD":  # a link checker: it learns the link works, and confirms nothing
        return _message(request, "Confirm your address")
    # the suppression first: whatever the lead then does meets an address that takes e-mail
    await asyncio.to_thread(forms.optin.release, pending.address)
    event = record.confirmed_event(found, event_id=pending.event_id, version=pending.version, at=_now())
    try:
        await deliver(ctx.client, ctx.settings, event, key=pending.lead, door="form")
    except IntakeError as err:  # the lead is gone: the address is confirmed all the same
        log.warning("form %s: confirmation for lead %s not passed on: %s", found.name, pending.lead, err,
                    extra={"lead_id": pending.lead})
    except RPCError as err:
        log.warning("form %s: confirmation for lead %s not passed on: %s", found.name, pending.lead,
                    err.message, extra={"lead_id": pending.lead})
        return _message(request, "Please try again", "We could not record your confirmation just now. "
                        "Please follow the link again in a moment.", status=503, bad=True)
    metrics.count("leadflow_form_confirmed", "Double opt-in links followed, by form", {"form": found.name})
    return _message(request, "Thank you: your address is confirmed",
                    "Our e-mail will reach you from now on; each one has a link to unsubscribe.")


router.add_api_route("/f/{form}", show, methods=["GET"])
router.add_api_route("/f/{form}", take, methods=["POST"])
router.add_api_route("/f/{form}/confirm", confirm, methods=["GET", "POST"])
