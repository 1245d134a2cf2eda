"""Logging in with an API key and out: the session cookie is signed and holds the role (and the
roster rep the key names), never the key."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from leadflow.api.deps import Ctx
from leadflow.logins import LOGINS
from leadflow.pages.deps import CHECKED_FORM, PAGE_ROLES, FormText
from leadflow.pages.render import render

log = logging.getLogger("leadflow.pages")
router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/inbox", status_code=303)


@router.get("/login")
async def login_form(request: Request, next: str = "/inbox") -> Response:
    return render(request, "login.html", next=_local(next), error=None)


@router.post("/login", dependencies=[CHECKED_FORM])
async def login(request: Request, ctx: Ctx, key: FormText = "", next: FormText = "/inbox") -> Response:
    client = request.client.host if request.client else "?"
    wait = LOGINS.wait(client)
    if wait:
        log.warning("login refused: too many failed logins from %s", client)
        refused = render(request, "login.html", status=429, next=_local(next),
                         error=f"Too many failed logins from here; try again in {wait} s.")
        refused.headers["Retry-After"] = str(wait)
        return refused
    role, person = ctx.keys.holder_of(key.strip()) or (None, None)
    if role not in PAGE_ROLES:
        LOGINS.failed(client)
        log.warning("failed login from %s: %s", client, "unknown key" if role is None else f"{role} key")
        error = "That key is not known here." if role is None else f"The {role} role has no pages."
        return render(request, "login.html", status=401 if role is None else 403, next=_local(next),
                      error=error)
    request.session.clear()  # a new session for the new role
    request.session["role"] = role
    request.session["key"] = ctx.keys.fingerprint(key.strip())
    if person:  # the key says who holds it: the inbox does not ask
        request.session["rep"] = person
        request.session["rep_from_key"] = True
    return RedirectResponse(_local(next), status_code=303)


@router.post("/logout", dependencies=[CHECKED_FORM])
async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


def _local(path: str) -> str:
    """Only paths of this site (no open redirect)."""
    return path if path.startswith("/") and not path.startswith("//") else "/inbox"
