"""Every request body capped before any route (or its authentication) runs: a body declared
larger than LEADFLOW_HTTP_MAX_BODY is answered 413 without reading it, and one sent without a
length (chunked) is read up to the cap and no further. Routes that read pydantic bodies, the
CRM's signed answers and the codec's payloads are all behind it."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        chunked = b"transfer-encoding" in headers
        if length is None and not chunked:  # no body at all
            await self.app(scope, receive, send)
            return
        if length is not None and not chunked:
            if not length.isdigit():
                await _answer(send, 400, "Content-Length is not a number")
                return
            if int(length) > self.limit:
                await _answer(send, 413, f"the body holds {int(length)} bytes; at most {self.limit}")
                return
        # Read it here, counting what really comes (a chunked body may say any Content-Length
        # beside), no further than the cap; the route then reads it from memory.
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await _answer(send, 413, f"the body holds more than {self.limit} bytes")
                return
        await self.app(scope, _replay(bytes(body), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    given = False

    async def again() -> Message:
        nonlocal given
        if given:
            return await receive()  # what comes after the body: a disconnect
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


async def _answer(send: Send, status: int, detail: str) -> None:
    """A JSON answer in FastAPI's shape; the connection closes, since the rest of the body was
    not read."""
    payload: dict[str, Any] = {"detail": detail}
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
