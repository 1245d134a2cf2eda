"""Bounces and abuse reports that come back after a message left, posted by ops' mail plumbing
(a mailbox's forwarding rule, a provider's feedback loop): the raw message in, what was done out
(leadflow.delivery.inbound)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from leadflow.api.deps import ERRORS, Ctx, answer, require, unprocessable
from leadflow.delivery.inbound import MAX_REPORT, NotAReport, receive, telling

router = APIRouter(prefix="/v1", tags=["mail"], responses=ERRORS)
TYPES = ("message/rfc822", "text/plain")  # text/plain: what a bare `curl --data-binary` says it is


@router.post("/mail/inbound", summary="A bounce (RFC 3464) or an abuse report (RFC 5965), as a raw message",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "message/rfc822": {"schema": {"type": "string", "format": "binary"}}}}},
             responses={413: answer(f"more than {MAX_REPORT} bytes"),
                        415: answer("a body that is not message/rfc822"),
                        422: answer("a message that is neither a delivery status notification nor an "
                                    "abuse report")})
async def mail_inbound(request: Request, ctx: Ctx,
                       _: str = Depends(require("report_mail"))) -> dict[str, Any]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in TYPES:
        raise HTTPException(415, "the body is a raw message: Content-Type: message/rfc822 "
                                 f"(not {kind or 'none'})")
    raw = await request.body()
    if len(raw) > MAX_REPORT:
        raise HTTPException(413, f"the message holds {len(raw)} bytes; a report takes at most {MAX_REPORT}")
    try:
        outcome = await receive(raw, ctx.ledger, telling(ctx.client, ctx.settings))
    except NotAReport as err:
        raise unprocessable("body", str(err)) from None
    return outcome.as_dict()
