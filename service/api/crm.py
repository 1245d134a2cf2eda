"""The CRM answers a hand-off: accept or reject, like the inbox buttons. No API key: the CRM
signs each request with the webhook secret (X-Leadflow-Signature, the scheme leadflow signs its
own webhooks with), and a request signed more than five minutes ago, or seen before, is refused."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field, ValidationError

from delivery.webhook import WINDOW, BadSignature, verify
from service import tasks
from service.api.deps import Ctx, answer, unprocessable
from service.api.tasks import task_answer

router = APIRouter(prefix="/v1/crm", tags=["crm"], responses={
    400: answer("a body that is not JSON"),
    401: answer("no signature, a wrong one, one older than five minutes, or one seen before"),
    403: answer("CRM answers are off here: no LEADFLOW_WEBHOOK_SECRET is set"),
    404: answer("no such task"), 409: answer("the task refused the answer"),
    422: answer("a body that is not what the route takes"),
    503: answer("Temporal did not answer")})


class CrmAccept(BaseModel):
    by: str = Field("", max_length=200, description="who accepted it in the CRM")


class CrmReject(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S")
    by: str = Field("", max_length=200)


class _Replays:
    """Signatures already used, for as long as they would verify: a captured request sent again
    within the window is refused."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_time(self, header: str, now: float) -> bool:
        with self._lock:
            for mac, at in list(self._seen.items()):
                if at < now - 2 * WINDOW:
                    del self._seen[mac]
            if header in self._seen:
                return False
            self._seen[header] = now
            return True


_replays = _Replays()
_SIGNED = {"parameters": [{"name": "X-Leadflow-Signature", "in": "header", "required": True,
                           "schema": {"type": "string"},
                           "description": 't=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>"> '
                                          "under LEADFLOW_WEBHOOK_SECRET"}]}


async def _signed(request: Request, ctx: Ctx, model: type[BaseModel]) -> Any:
    secret = ctx.settings.webhook_secret
    if not secret:
        raise HTTPException(403, "CRM answers are off: they are signed with LEADFLOW_WEBHOOK_SECRET, "
                                 "and none is set here")
    body = await request.body()
    header = request.headers.get("x-leadflow-signature")
    try:
        verify(secret, header, body)
    except BadSignature as err:
        raise HTTPException(401, f"X-Leadflow-Signature: {err}") from None
    if not _replays.first_time(header or "", time.time()):
        raise HTTPException(401, "X-Leadflow-Signature: this signed request was already used")
    try:
        data = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HTTPException(400, "the body is not JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        raise unprocessable("body." + ".".join(str(p) for p in first["loc"]), first["msg"]) from None


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
