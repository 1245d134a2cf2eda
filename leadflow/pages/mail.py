"""What the local SMTP sink caught (`make up` without LEADFLOW_SMTP_HOST)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from leadflow.api.deps import Ctx
from leadflow.delivery import sink
from leadflow.pages.deps import LoggedIn, Missing
from leadflow.pages.render import render

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


@router.get("/mail")
async def mail_page(request: Request, _: LoggedIn, ctx: Ctx) -> Response:
    found = await asyncio.to_thread(sink.messages, ctx.settings.mail_dir, 200)
    return render(request, "mail.html", messages=found, directory=ctx.settings.mail_dir,
                  smtp=ctx.settings.smtp_host)


@router.get("/mail/{message_id}")
async def mail_message_page(request: Request, message_id: str, _: LoggedIn, ctx: Ctx) -> Response:
    found = await asyncio.to_thread(sink.message, ctx.settings.mail_dir, message_id)
    if found is None:
        raise Missing(f"message {message_id}")
    return render(request, "mail_message.html", msg=found)
