"""Dependencies of the API routes: the shared context, and the caller's role (deny by default:
no key or an unknown one is a 401, a known key without the permission a 403)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from service.api.context import Context
from service.keys import allowed

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`")


def context(request: Request) -> Context:
    return request.app.state.ctx


Ctx = Annotated[Context, Depends(context)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def require(permission: str) -> Callable[..., str]:
    """A dependency that answers with the caller's role, or refuses the request."""

    def check(ctx: Ctx, credentials: Credentials) -> str:
        role = ctx.keys.role_of(credentials.credentials if credentials else None)
        if role is None:
            raise HTTPException(401, "an API key is needed: Authorization: Bearer <key>",
                                headers={"WWW-Authenticate": "Bearer"})
        if not allowed(role, permission):
            raise HTTPException(403, f"the {role} role may not {permission.replace('_', ' ')}")
        return role

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


class Detail(BaseModel):
    detail: str | list[Any]


def answer(description: str) -> dict[str, Any]:
    return {"model": Detail, "description": description}


# The answers every /v1 route may give besides its own; documented, so clients (and the schema
# checks in tests/test_api_schema.py) know them.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: answer("a body that is not JSON, or not UTF-8"),
    401: answer("no API key, or one this service does not know"),
    403: answer("the key's role may not do this"),
    503: answer("Temporal did not answer"),
}


def unprocessable(where: str, message: str) -> HTTPException:
    """A 422 in the shape of FastAPI's own: a list of problems, each at a place in the request."""
    return HTTPException(422, [{"loc": where.split("."), "msg": message, "type": "value_error"}])
