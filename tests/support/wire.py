"""Real servers on loopback for delivery tests: an SMTP server (aiosmtpd) that keeps what
arrives and refuses some recipients as a mail server would, and an HTTP receiver that plays
the CRM, answering each path as a test tells it."""

from __future__ import annotations

import asyncio
import email
import email.policy
import http.server
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.temporal_harness import free_port


class _Catch:
    def __init__(self, catcher: SmtpCatcher) -> None:
        self.catcher = catcher

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802
                          options: list[str]) -> str:
        if self.catcher.hold == "rcpt":
            await self.catcher.held()
        if address.split("@")[0].startswith("bounce"):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        with self.catcher.lock:
            self.catcher.messages.append(msg)  # type: ignore[arg-type]
        if self.catcher.hold == "data":  # kept, and the sender not told yet
            await self.catcher.held()
        return "250 kept"


class SmtpCatcher:
    """Keeps every message; a recipient whose name starts with `bounce` is refused with a 550.
    With `hold` ("rcpt" or "data"), it answers no RCPT (or no DATA, the message kept) until
    `release` is set; `holding` counts the answers held back."""

    def __init__(self, hold: str = "") -> None:
        self.hold = hold
        self.release = threading.Event()
        self.holding = 0
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(_Catch(self), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpCatcher:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    async def held(self) -> None:
        with self.lock:
            self.holding += 1
        while not self.release.is_set():
            await asyncio.sleep(0.01)

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]

    async def wait_for(self, address: str, count: int = 1, seconds: float = 30) -> list[EmailMessage]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if len(found := self.to(address)) >= count:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"{address}: {len(self.to(address))} of {count} e-mails arrived")

    def ids(self) -> Counter[str]:
        with self.lock:
            return Counter(str(m["Message-ID"]) for m in self.messages)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """The CRM: records every request; `answers[path]` says how a path answers: a status, or a
    function of the request and how many with its Idempotency-Key came before."""

    answers: dict[str, int | Callable[[Request, int], int]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = Request(self.path, dict(self.headers), body, 0)
                key = request.headers.get("Idempotency-Key")
                with receiver.lock:
                    seen = sum(1 for r in receiver.requests if r.headers.get("Idempotency-Key") == key)
                    answer = receiver.answers.get(self.path, 200)
                    request.status = answer(request, seen) if callable(answer) else answer
                    receiver.requests.append(request)
                status = request.status
                text = b'{"ok": true}' if status < 300 else b'{"error": "this CRM says no"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def taken(self) -> list[Request]:
        """The requests it accepted (2xx)."""
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    async def wait_for(self, check: Callable[[list[Request]], bool], seconds: float = 30) -> list[Request]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                got = list(self.requests)
            if check(got):
                return got
            await asyncio.sleep(0.05)
        raise AssertionError(f"the receiver never got what was expected: {[(r.path, r.status) for r in got]}")
