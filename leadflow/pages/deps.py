"""Dependencies of the pages, as leadflow.api.deps has them for the API: the caller, from the
signed session cookie instead of a key on every request; the CSRF token every form carries; the
permission a page or a form needs.

What a page answers instead of its handler (the login page first, a refusal, a "not found") is a
PageAnswer: raised by a dependency or a handler, answered by the one exception handler `mount`
adds, so no handler repeats a try/except for it."""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from leadflow.api.deps import Caller, refuse_unless
from leadflow.keys import allowed
from leadflow.pages.render import csrf_token, render

PAGE_ROLES = ("sales", "ops", "admin")
FormText = Annotated[str, Form(max_length=2000)]


class PageAnswer(Exception):
    def answer(self, request: Request) -> Response:
        raise NotImplementedError


class LoginFirst(PageAnswer):
    """No live session: the login page, and back to this page after."""

    def answer(self, request: Request) -> Response:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


class Refused(PageAnswer):
    """A page the session's role does not see."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def answer(self, request: Request) -> Response:
        return render(request, "missing.html", status=403, message=self.message)


class Missing(PageAnswer):
    """What the page is about is not there."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what

    def answer(self, request: Request) -> Response:
        return render(request, "missing.html", status=404, what=self.what)


@contextlib.contextmanager
def missing_on(lookup: type[Exception], what: str) -> Iterator[None]:
    """`lookup` raised inside: the page says there is no `what`."""
    try:
        yield
    except lookup:
        raise Missing(what) from None


@dataclass(frozen=True)
class PageCaller(Caller):
    """The API's caller, with the roster rep the session says it is: the one its key names
    (`person` too), or the one picked in the inbox's "I am"."""

    me: str | None = None

    def answering(self, asked: str) -> str:
        """Who answers a task: the key's person whatever the form says; else the form's; else
        the rep picked in "I am"."""
        return self.person or asked.strip() or self.me or ""


def session_role(request: Request) -> str | None:
    """The role of the page session, while the key it was opened with is still one of the keys:
    removing a key ends its sessions at their next request, not 12 hours later."""
    if "session" not in request.scope:
        return None
    role = request.session.get("role")
    if role is None:
        return None
    holder = request.app.state.ctx.keys.holder_of_fingerprint(request.session.get("key", ""))
    if holder is None or holder[0] != role:
        request.session.clear()
        return None
    return str(role)


def page_caller(request: Request) -> PageCaller:
    role = session_role(request)
    if role not in PAGE_ROLES:
        raise LoginFirst()
    me = request.session.get("rep")
    return PageCaller(role, me if request.session.get("rep_from_key") else None, me)


# A handler parameter of one of these types holds the caller, or the page answers instead.
LoggedIn = Annotated[PageCaller, Depends(page_caller)]


def checked_form(request: Request, csrf: FormText = "") -> None:
    if not hmac.compare_digest(csrf.encode(), csrf_token(request).encode()):
        raise HTTPException(403, "the form is stale or not ours (CSRF token); reload the page")


def form_caller(permission: str | None = None, what: str = "") -> Callable[..., PageCaller]:
    """The caller of a form: a stranger goes to the login page before anything is checked; then
    a stale or forged form (CSRF), then a role without `permission`, is a 403 naming `what`."""

    def check(caller: LoggedIn, _: Annotated[None, Depends(checked_form)]) -> PageCaller:
        if permission is not None:
            refuse_unless(caller.role, permission, what)
        return caller

    return check


def page_for(permission: str, what: str) -> Callable[..., PageCaller]:
    """The caller of a page only some roles see; the others get a page that says so."""

    def check(caller: LoggedIn) -> PageCaller:
        if not allowed(caller.role, permission):
            raise Refused(f"The {caller.role} role does not see {what}; ops does.")
        return caller

    return check


FormCaller = Annotated[PageCaller, Depends(form_caller())]
TaskWorker = Annotated[PageCaller, Depends(form_caller("work_tasks", "work tasks"))]
RosterManager = Annotated[PageCaller, Depends(form_caller("manage_roster", "change the roster"))]
LeadMerger = Annotated[PageCaller, Depends(form_caller("merge_leads", "merge leads"))]
RosterReader = Annotated[PageCaller, Depends(page_for("read_tasks", "the roster"))]
DeliveriesReader = Annotated[PageCaller, Depends(page_for("read_deliveries", "deliveries"))]
FunnelReader = Annotated[PageCaller, Depends(page_for("read_policies", "the funnel"))]
# a form anyone may send (the login, the logout): its token is all it is checked for
CHECKED_FORM = Depends(checked_form)

