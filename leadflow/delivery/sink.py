"""A local SMTP server that keeps what arrives as .eml files: `make up` sends its e-mail here
when no LEADFLOW_SMTP_HOST is set, so a new user sees real messages (headers, links and all) on
the /mail page without a mail server of their own. A bounce or an abuse report sent to it (with
swaks or smtplib) goes where POST /v1/mail/inbound sends one (leadflow.delivery.inbound). Never
for production: it accepts anything."""

from __future__ import annotations

import email
import email.policy
import itertools
import logging
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from leadflow.delivery.inbound import NotAReport, looks_like_report

_NAME = re.compile(r"^[0-9]+-[0-9]+\.eml$")
_BRACKETED = re.compile(r"<([^<>]*)>")
# what the page may turn into a link: anything else (javascript:, data:, ...) is shown as text
LINKABLE = ("http://", "https://", "mailto:")
_count = itertools.count()
log = logging.getLogger("leadflow.delivery.sink")
Inbound = Callable[[bytes], Coroutine[Any, Any, Any]]


class _Keep:
    def __init__(self, directory: Path, inbound: Inbound | None = None) -> None:
        self.directory = directory
        self.inbound = inbound

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{next(_count)}.eml"
        tmp = self.directory / f".{name}"
        raw = envelope.original_content or envelope.content
        tmp.write_bytes(raw)
        tmp.rename(self.directory / name)  # readers never see half a message
        if self.inbound is not None and looks_like_report(raw):
            try:
                outcome = await self.inbound(raw)
                log.info("report in the sink: %s", outcome.as_dict())
            except NotAReport as err:
                log.info("a multipart/report in the sink that is no bounce or abuse report: %s", err)
            except Exception as err:  # noqa: BLE001 - a developer's tool: kept, logged, never refused
                log.warning("a report in the sink was kept but not taken: %s", err)
        return "250 kept"


@dataclass
class Sink:
    controller: Controller
    directory: Path

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def stop(self) -> None:
        self.controller.stop()


def start_sink(directory: Path, host: str = "127.0.0.1", port: int = 0,
               inbound: Inbound | None = None) -> Sink:
    """Listen on host:port (0: a free port) in a thread of its own; `inbound` takes the reports
    (delivery.inbound.for_sink)."""
    if port == 0:
        import socket

        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    controller = Controller(_Keep(directory, inbound), hostname=host, port=port)
    controller.start()
    return Sink(controller, directory)


def messages(directory: Path, limit: int = 100) -> list[dict[str, Any]]:
    """The newest kept messages: id, from, to, subject, date."""
    if not directory.is_dir():
        return []
    names = sorted((p.name for p in directory.iterdir() if _NAME.match(p.name)), reverse=True)[:limit]
    out = []
    for name in names:
        msg = _parse(directory / name)
        out.append({"id": name.removesuffix(".eml"), "from": msg["From"] or "", "to": msg["To"] or "",
                    "subject": msg["Subject"] or "", "date": msg["Date"] or ""})
    return out


def message(directory: Path, message_id: str) -> dict[str, Any] | None:
    """One kept message: its headers, text and HTML parts; None if there is no such one."""
    name = f"{message_id}.eml"
    if not _NAME.match(name) or not (directory / name).is_file():
        return None
    msg = _parse(directory / name)
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    return {"id": message_id, "headers": [(k, str(v)) for k, v in msg.items()],
            "unsubscribe": unsubscribe_links(str(msg["List-Unsubscribe"] or "")),
            "subject": msg["Subject"] or "",
            "text": text.get_content() if text is not None else "",
            "html": html.get_content() if html is not None else ""}


def unsubscribe_links(header: str) -> list[dict[str, str | None]]:
    """The values of a List-Unsubscribe header (RFC 2369: `<uri>, <uri>`), each with the `href`
    the page may give it: only an http(s) or mailto URI is one; anything else (a `javascript:`
    URI would run in the page) is None and shown as text. Whatever sent the mail wrote it."""
    values = _BRACKETED.findall(header) or [header.strip(" <>")]
    out: list[dict[str, str | None]] = []
    for value in (v.strip() for v in values):
        if value:
            out.append({"value": value, "href": value if value.lower().startswith(LINKABLE) else None})
    return out


def _parse(path: Path) -> EmailMessage:
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)  # what the default policy makes
    return parsed
