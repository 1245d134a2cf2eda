"""The CRM answers a hand-off: accept or reject, like the inbox buttons. No API key: the CRM
signs each request under LEADFLOW_CRM_SECRET (leadflow.crm_auth: the method, path and body,
within five minutes, each signature once across every API process). It is a key of its own: the
hand-off webhooks leadflow sends are signed under LEADFLOW_WEBHOOK_SECRET with another scheme,
so nothing leadflow sends verifies as an answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leadflow.api.deps import Ctx, answer, unprocessable
from leadflow.api.events import read_raw
from leadflow.api.tasks import task_answer
from leadflow.crm_auth import BadSignature, Replays, verify
from leadflow.operations import tasks

router = APIRouter(prefix="/v1/crm", tags=["crm"], responses={
    400: answer("a body that is not JSON"),
    401: answer("no signature, a wrong one, one older than five minutes, or one seen before"),
    403: answer("CRM answers are off here: no LEADFLOW_CRM_SECRET is set"),
    404: answer("no such task"), 409: answer("the task refused the answer"),
    413: answer("a body over the size limit"),
    422: answer("a body that is not what the route takes (unknown fields included)"),
    503: answer("Temporal or the shared database did not answer")})


class CrmAccept(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a body meant for something else is not an answer
    by: str = Field("", max_length=200, description="who accepted it in the CRM")


class CrmReject(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S")
    by: str = Field("", max_length=200)


_SIGNED = {"parameters": [{"name": "X-Leadflow-Signature", "in": "header", "required": True,
                           "schema": {"type": "string", "pattern": "^t=[1-9][0-9]*,v1=[0-9a-f]{64}$"},
                           "description": 't=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<METHOD>.<path>.'
                                          '<body>"> under LEADFLOW_CRM_SECRET; the path without the '
                                          "query, e.g. POST and /v1/crm/tasks/ID/reject"}]}


async def _signed(request: Request, ctx: Ctx, model: type[BaseModel]) -> Any:
    secret = ctx.settings.crm_secret
    if not secret:
        raise HTTPException(403, "CRM answers are off: they are signed with LEADFLOW_CRM_SECRET, "
                                 "and none is set here")
    body = await read_raw(request, ctx.settings.max_body)
    try:
        t, mac = verify(secret, request.headers.get("x-leadflow-signature"), request.method,
                        request.url.path, body)
    except BadSignature as err:
        raise HTTPException(401, f"X-Leadflow-Signature: {err}") from None
    try:
        data = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HTTPException(400, "the body is not JSON") from None
    try:
        parsed = model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        raise unprocessable("body." + ".".join(str(p) for p in first["loc"]), first["msg"]) from None
    if not await asyncio.to_thread(Replays(ctx.ledger).first_time, t, mac):
        raise HTTPException(401, "X-Leadflow-Signature: this signed request was already used")
    return parsed


@router.post("/tasks/{task_id}/accept", summary="The CRM accepts a hand-off (signed)",
             openapi_extra={**_SIGNED, "requestBody": {"content": {"application/json": {
                 "schema": CrmAccept.model_json_schema()}}}})
async def crm_accept(task_id: str, request: Request, ctx: Ctx) -> dict[str, Any]:
    body: CrmAccept = await _signed(request, ctx, CrmAccept)
    return await task_answer(tasks.accept(ctx.client, task_id, body.by or "crm"), task_id)


@router.post("/tasks/{task_id}/reject", summary="The CRM rejects a hand-off with a reason (signed)",
             openapi_extra={**_SIGNED, "requestBody": {"required": True, "content": {"application/json": {
                 "schema": CrmReject.model_json_schema()}}}})
async def crm_reject(task_id: str, request: Request, ctx: Ctx) -> dict[str, Any]:
    body: CrmReject = await _signed(request, ctx, CrmReject)
    return await task_answer(tasks.reject(ctx.client, task_id, body.reason, body.by or "crm"), task_id)
