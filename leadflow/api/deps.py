"""Dependencies of the API routes: the shared context, and the caller's role (deny by default:
no key or an unknown one is a 401, a known key without the permission a 403)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from leadflow.api.context import Context
from leadflow.keys import allowed

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`")


def context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(context)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


@dataclass(frozen=True)
class Caller:
    role: str
    person: str | None  # the person the key names (`role:person:key`), or None

    def by(self, asked: str = "") -> str:
        """Who a change is recorded as: the key's person when it names one (what a request says
        never replaces it), else what the request says, else the role (never empty: the record
        must say something)."""
        return self.person or asked.strip() or f"api ({self.role})"


def require_caller(permission: str) -> Callable[..., Caller]:
    """A dependency that answers with the caller (role and person), or refuses the request."""

    def check(ctx: Ctx, credentials: Credentials) -> Caller:
        holder = ctx.keys.holder_of(credentials.credentials if credentials else None)
        if holder is None:
            raise HTTPException(401, "an API key is needed: Authorization: Bearer <key>",
                                headers={"WWW-Authenticate": "Bearer"})
        role, person = holder
        refuse_unless(role, permission)
        return Caller(role, person)

    return check


def refuse_unless(role: str, permission: str, what: str = "") -> None:
    """A 403 unless `role` has `permission`; `what`: how the refusal names it, when the
    permission's own name would read badly to the person refused (the pages' forms)."""
    if not allowed(role, permission):
        raise HTTPException(403, f"the {role} role may not {what or permission.replace('_', ' ')}")


def require(permission: str) -> Callable[..., str]:
    """A dependency that answers with the caller's role, or refuses the request."""
    check_caller = require_caller(permission)

    def check(ctx: Ctx, credentials: Credentials) -> str:
        return check_caller(ctx, credentials).role

    return check


# A route parameter of one of these types holds the caller's role, or the request is refused.
SendsEvents = Annotated[str, Depends(require("send_events"))]
ReadsLeads = Annotated[str, Depends(require("read_leads"))]
ReadsTasks = Annotated[str, Depends(require("read_tasks"))]
WorksTasks = Annotated[str, Depends(require("work_tasks"))]
ReadsPolicies = Annotated[str, Depends(require("read_policies"))]
ValidatesPolicies = Annotated[str, Depends(require("validate_policies"))]
GovernsPolicies = Annotated[str, Depends(require("govern_policies"))]
ReadsDeliveries = Annotated[str, Depends(require("read_deliveries"))]
# ... or the caller, with the person their key names
ReaderOfTasks = Annotated[Caller, Depends(require_caller("read_tasks"))]
WorkerOfTasks = Annotated[Caller, Depends(require_caller("work_tasks"))]
ManagerOfRoster = Annotated[Caller, Depends(require_caller("manage_roster"))]
ApproverOfPolicies = Annotated[Caller, Depends(require_caller("approve_policies"))]
GovernorOfPolicies = Annotated[Caller, Depends(require_caller("govern_policies"))]


class Detail(BaseModel):
    detail: str | list[Any]


def answer(description: str) -> dict[str, Any]:
    return {"model": Detail, "description": description}


# The answers every /v1 route may give besides its own; documented, so clients (and the schema
# checks in tests/service/test_api_schema.py) know them.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: answer("a body that is not JSON, or not UTF-8"),
    401: answer("no API key, or one this service does not know"),
    403: answer("the key's role may not do this"),
    503: answer("Temporal or the shared database did not answer (with Retry-After for the database)"),
}


def unprocessable(where: str, message: str) -> HTTPException:
    """A 422 in the shape of FastAPI's own: a list of problems, each at a place in the request."""
    return HTTPException(422, [{"loc": where.split("."), "msg": message, "type": "value_error"}])
