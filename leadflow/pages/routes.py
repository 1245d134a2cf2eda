"""Pages for people, rendered on the server (Jinja2, no JavaScript, nothing fetched from outside):
the sales inbox, a task with the lead's story, leads by state and a lead's timeline, the sales
roster, the policy desk; for ops the deliveries and the funnel; and the e-mail `make up`'s local
SMTP sink caught.

A person logs in with an API key; the session cookie is signed and holds the role (and the
roster rep the key names), never the key. Every form carries a CSRF token bound to the session.
Each page's router is in the module named for it; what they depend on is in leadflow.pages.deps."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from leadflow.pages import inbox, leads, login, mail, ops, policies, roster, tasks
from leadflow.pages.deps import PageAnswer
from leadflow.pages.render import HERE, templates
from leadflow.pages.render import chart as _chart
from leadflow.pages.render import timeline as _timeline

# named here for what renders outside the pages (leadflow.api.links) and tests of the templates
__all__ = ["_chart", "_timeline", "mount", "templates"]
ROUTERS = (login.router, inbox.router, tasks.router, roster.router, leads.router, ops.router, policies.router,
           mail.router)


def mount(app: FastAPI, secret: str, secure: bool = False) -> None:
    """The pages on `app`, their sessions signed with `secret`; `secure`: the site is reached over
    https (LEADFLOW_PUBLIC_URL), so the cookie never travels in the clear."""
    app.add_middleware(SessionMiddleware, secret_key=secret, session_cookie="leadflow_session",
                       same_site="strict", max_age=12 * 3600, https_only=secure)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_exception_handler(PageAnswer, _answer)
    for router in ROUTERS:
        app.include_router(router)


async def _answer(request: Request, err: Exception) -> Response:
    assert isinstance(err, PageAnswer)  # the only exception this handles
    return err.answer(request)
