"""A codec server for Temporal's Web UI and CLI: POST /codec/encode and /codec/decode take and
give `{"payloads": [{"metadata": {name: base64}, "data": base64}]}`, the shape both send. Only
the ops and admin roles may read what Temporal holds encrypted: by API key
(`temporal ... --codec-auth "Bearer <key>"`) or by a page session an ops person logged into
(the Web UI sends its cookie when "include cross-origin credentials" is on). Browsers reach it
from the origins in LEADFLOW_CODEC_CORS_ORIGINS only (see main.codec_cors)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from temporalio.api.common.v1 import Payload

from leadflow.api.deps import Credentials, Ctx, answer
from leadflow.codec.aesgcm import CodecError
from leadflow.keys import allowed

router = APIRouter(prefix="/codec", tags=["codec"])


class WirePayload(BaseModel):
    metadata: dict[str, str] = Field(default_factory=dict, description="name -> base64 value")
    data: str = Field(default="", description="base64")


class WirePayloads(BaseModel):
    # protobuf's JSON leaves an empty list out: `temporal` sends `{}` for a query without arguments
    payloads: list[WirePayload] = Field(default_factory=list, max_length=10_000)


def codec_caller(request: Request, ctx: Ctx, credentials: Credentials) -> str:
    """The caller's role by API key, else by page session; refused unless it may use the codec."""
    role = ctx.keys.role_of(credentials.credentials if credentials else None)
    if role is None and "session" in request.scope:
        role = request.session.get("role")
    if role is None:
        raise HTTPException(401, "an ops API key (Authorization: Bearer <key>) or an ops page session "
                                 "is needed", headers={"WWW-Authenticate": "Bearer"})
    if not allowed(role, "use_codec"):
        raise HTTPException(403, f"the {role} role may not use the codec")
    return role


UsesCodec = Annotated[str, Depends(codec_caller)]
ERRORS: dict[int | str, dict[str, Any]] = {
    400: answer("a payload that is not base64, or that does not decrypt with the keys at hand"),
    401: answer("no ops key or session"), 403: answer("the role may not use the codec"),
    413: answer("a body over LEADFLOW_HTTP_MAX_BODY")}


def _from_wire(body: WirePayloads) -> list[Payload]:
    out = []
    for n, p in enumerate(body.payloads):
        try:
            metadata = {k: base64.b64decode(v, validate=True) for k, v in p.metadata.items()}
            out.append(Payload(metadata=metadata, data=base64.b64decode(p.data, validate=True)))
        except (binascii.Error, ValueError):
            raise HTTPException(400, f"payloads[{n}]: metadata values and data are base64") from None
    return out


def _to_wire(payloads: list[Payload]) -> WirePayloads:
    return WirePayloads(payloads=[WirePayload(
        metadata={k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
        data=base64.b64encode(p.data).decode()) for p in payloads])


@router.post("/encode", response_model=WirePayloads, responses=ERRORS,
             summary="Encrypt payloads as leadflow's workers do (for the Temporal Web UI and CLI)")
async def encode(body: WirePayloads, ctx: Ctx, _: UsesCodec) -> WirePayloads:
    return _to_wire(await ctx.codec.encode(_from_wire(body)))


@router.post("/decode", response_model=WirePayloads, responses=ERRORS,
             summary="Decrypt payloads Temporal holds (for the Temporal Web UI and CLI)")
async def decode(body: WirePayloads, ctx: Ctx, _: UsesCodec) -> WirePayloads:
    try:
        return _to_wire(await ctx.codec.decode(_from_wire(body)))
    except CodecError as err:
        raise HTTPException(400, str(err)) from None
