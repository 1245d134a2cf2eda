"""Mail that comes back after a message left: a delivery status notification (RFC 3464: the
receiving side gave up, or will retry) or an abuse report (ARF, RFC 5965: the person pressed
"this is spam"). `POST /v1/mail/inbound` and the local sink of `make up` both hand the raw
message to `receive`, one path for both.

A report finds its delivery in the ledger by what leadflow wrote into the message it returns:
X-Leadflow-Id (the Message-ID again, kept when a relay rewrites the Message-ID), then the
Message-ID; and only when neither came back (a DSN that returns no headers), by the recipient's
address, the newest e-mail sent to it. Providers often redact the recipient from an abuse
report; the ledger's row then still says which address to suppress.

What a report does:
- a hard bounce (action `failed`, status 5.x.x): the delivery marked `bounced`, the address
  suppressed (`bounced`), the lead sent `email_bounce` with `hard: true` and the status;
- a soft bounce (`failed` with 4.x.x: the receiving side gave up on a passing condition): the
  lead sent `email_bounce` with `hard: false`; nothing suppressed, the delivery stays `sent`;
- `delayed` (the receiving side is still trying), `delivered`, `relayed`, `expanded`: nothing;
- an abuse report: the address suppressed at once (`complaint`), then the lead sent `complaint`.
Each is kept in mail_reports once per delivery and kind, and the events' ids come from the
delivery's key: a report posted twice changes nothing the second time.

`email_bounce` is an event no outside door may send (leadflow.intake.INTERNAL_EVENTS): this
module sends it as leadflow's own, after it read the report itself."""

from __future__ import annotations

import asyncio
import email
import email.parser
import email.utils
import logging
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import Message
from typing import Any, Literal

from sqlalchemy import func, select, update
from temporalio.client import Client

from leadflow.db.database import Database
from leadflow.db.schema import deliveries, mail_reports
from leadflow.delivery.links import bounce_id, delivery_digest
from leadflow.intake import IntakeError, deliver
from leadflow.settings import Settings

log = logging.getLogger("leadflow.delivery.inbound")

MAX_REPORT = 1024 * 1024  # bytes: a report with the whole original message, generously
_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
_ANGLED = re.compile(r"<[^<>\s]+>")
COMPLAINT_TYPES = frozenset({"abuse", "fraud"})  # RFC 5965's that say "do not send me this"


class NotAReport(ValueError):
    """Neither a delivery status notification nor an abuse report: says what it is instead."""


@dataclass(frozen=True)
class Report:
    """What a returned message says, before the ledger is asked."""

    kind: Literal["bounce", "complaint", "none"]
    recipient: str = ""  # the address the report is about ("" when redacted or missing)
    action: str = ""  # a DSN's: failed | delayed | delivered | relayed | expanded
    status: str = ""  # a DSN's RFC 3463 code, e.g. 5.1.1
    diagnostic: str = ""  # a DSN's Diagnostic-Code, or an abuse report's Feedback-Type
    ids: tuple[str, ...] = ()  # Message-IDs the report names: X-Leadflow-Id first, then Message-ID
    why: str = ""  # for kind none: why nothing is to be done

    @property
    def hard(self) -> bool:
        return self.status.startswith("5.")


def parse(raw: bytes) -> Report:
    """The report in a raw message (RFC 5322 bytes); raises NotAReport for anything else. A
    report forwarded as an attachment (message/rfc822) is found inside its envelope."""
    top = email.message_from_bytes(raw)
    report = _find_report(top)
    if report is None:
        raise NotAReport(f"neither a delivery status notification (multipart/report; "
                         f"report-type=delivery-status) nor an abuse report (multipart/report; "
                         f"report-type=feedback-report): the message is {top.get_content_type()}")
    kind = str(report.get_param("report-type", "", header="content-type")).lower()
    if kind == "delivery-status":
        return _dsn(report)
    return _arf(report)


def _find_report(msg: Message) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() == "multipart/report" and str(
                part.get_param("report-type", "", header="content-type")).lower() in (
                "delivery-status", "feedback-report"):
            return part
    return None


def _parts(report: Message) -> list[Message]:
    payload = report.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _dsn(report: Message) -> Report:
    fields = next((p for p in _parts(report) if p.get_content_type() == "message/delivery-status"), None)
    if fields is None:
        raise NotAReport("a delivery-status report without its message/delivery-status part")
    blocks = _blocks(fields)
    recipients = blocks[1:]  # the first block is about the message, the rest one per recipient
    if not recipients:
        raise NotAReport("a delivery-status report that names no recipient (no per-recipient fields)")
    # leadflow sends each message to one address; of several, the one that failed speaks
    block = next((b for b in recipients if _field(b, "Action").lower() == "failed"), recipients[0])
    action = _field(block, "Action").lower()
    status = _field(block, "Status").split()[0] if _field(block, "Status") else ""
    if not _STATUS.match(status):
        status = ""
    recipient = _address(_field(block, "Final-Recipient") or _field(block, "Original-Recipient"))
    diagnostic = _field(block, "Diagnostic-Code")
    ids = _ids(report)
    if action != "failed":
        return Report("none", recipient, action, status, diagnostic, ids,
                      why=f"action {action or '(none)'}: not a bounce" + (
                          " (the receiving server is still trying)" if action == "delayed" else ""))
    if not status.startswith(("4.", "5.")):
        # a failure with no usable code is as final as the MTA says: treat it as the RFC's 5.0.0
        status = "5.0.0"
    return Report("bounce", recipient, action, status, diagnostic, ids)


def _arf(report: Message) -> Report:
    part = next((p for p in _parts(report) if p.get_content_type() == "message/feedback-report"), None)
    if part is None:
        raise NotAReport("a feedback-report without its message/feedback-report part")
    fields = next(iter(_blocks(part)), Message())
    feedback = _field(fields, "Feedback-Type").lower()
    recipient = _address(_field(fields, "Original-Rcpt-To"))
    ids = _ids(report)
    if feedback not in COMPLAINT_TYPES:
        return Report("none", recipient, diagnostic=feedback, ids=ids,
                      why=f"feedback type {feedback or '(none)'}: not a complaint")
    return Report("complaint", recipient, diagnostic=feedback, ids=ids)


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part: the
    standard library gives the first as a list of messages, the second as one message."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    if isinstance(payload, str):  # a parser that kept it as text: read the blocks ourselves
        blocks = re.split(r"\r?\n\r?\n", payload)
        return [email.parser.HeaderParser().parsestr(b) for b in blocks if b.strip()]
    return []


def _field(block: Message, name: str) -> str:
    value = block.get(name)
    return " ".join(str(value).split()) if value is not None else ""


def _address(value: str) -> str:
    """`rfc822; ana@x.example` (a DSN's address type first) or a bare address, lower-cased."""
    kind, sep, rest = value.partition(";")
    address = rest if sep else kind
    found = email.utils.parseaddr(address.strip())[1]
    return found.strip().lower() if "@" in found else ""


def _ids(report: Message) -> tuple[str, ...]:
    """The returned message's X-Leadflow-Id and Message-ID, from its message/rfc822 or
    text/rfc822-headers part."""
    original: Message | None = None
    for part in _parts(report)[1:]:
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            first = inner[0] if isinstance(inner, list) and inner else None
            original = first if isinstance(first, Message) else None
        elif kind in ("text/rfc822-headers", "text/global-headers"):
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                original = email.parser.BytesHeaderParser().parsebytes(text)
        if original is not None:
            break
    if original is None:
        return ()
    out: list[str] = []
    for name in ("X-Leadflow-Id", "Message-ID"):
        for value in original.get_all(name, []):
            out += [m for m in _ANGLED.findall(str(value)) if m not in out]
    return tuple(out)


# -- the ledger ----------------------------------------------------------------------------------


@dataclass
class Found:
    key: str
    lead: str
    content: str
    address: str
    status: str
    by: str  # how it was found: message id (X-Leadflow-Id or Message-ID), address


def find(ledger: Database, report: Report) -> Found | None:
    c = deliveries.c
    columns = (c.key, c.lead, c.subject, c.target, c.status)
    with ledger.engine.connect() as db:
        for mid in report.ids:
            row = db.execute(select(*columns).where(c.message_id == mid, c.kind == "email")).first()
            if row is not None:
                return Found(row.key, row.lead, row.subject, row.target, row.status, "message id")
        if report.recipient:
            row = db.execute(select(*columns).where(
                # the report's address is lower-cased; the lead's as it was given
                c.kind == "email", func.lower(c.target) == report.recipient,
                c.status.in_(("sent", "bounced")))
                .order_by(c.updated_at.desc()).limit(1)).first()
            if row is not None:
                return Found(row.key, row.lead, row.subject, row.target, row.status, "address")
    return None


def _keep(ledger: Database, found: Found, kind: str, status: str, detail: str, now: float) -> bool:
    """The report kept once per delivery and kind; False when it was kept before."""
    with ledger.writing() as db:
        kept = db.execute(ledger.insert(mail_reports).values(
            key=found.key, kind=kind, lead=found.lead, status=status, detail=detail[:2000], at=now)
            .on_conflict_do_nothing(index_elements=["key", "kind"]).returning(mail_reports.c.key)).first()
        if kept is not None and kind == "hard":
            db.execute(update(deliveries).where(deliveries.c.key == found.key).values(
                status="bounced", detail=f"returned later, {status}: {detail}"[:2000], updated_at=now))
    return kept is not None


@dataclass
class Outcome:
    """What was done, as the route answers it."""

    report: str  # bounce | complaint | none
    bounce: str | None = None  # hard | soft
    status: str = ""
    found: bool = False
    matched_by: str | None = None
    lead: str | None = None
    delivery: str | None = None
    content: str | None = None
    done: list[str] = field(default_factory=list)
    why: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v not in (None, "")}
        out["found"] = self.found
        return out


Tell = Callable[[str, dict[str, Any]], Coroutine[Any, Any, bool]]


async def act(ledger: Database, report: Report, tell: Tell, now: float | None = None) -> Outcome:
    """Do what the report asks (module docstring); `tell(lead, event)` passes an event to its lead."""
    now = time.time() if now is None else now
    out = Outcome(report.kind, status=report.status, why=report.why)
    if report.kind == "none":
        return out
    found = await asyncio.to_thread(find, ledger, report)
    address = report.recipient or (found.address if found else "")
    if report.kind == "bounce":
        out.bounce = "hard" if report.hard else "soft"
    if found is not None:
        out.found, out.matched_by = True, found.by
        out.lead, out.delivery, out.content = found.lead, found.key, found.content
    # the address first: whatever becomes of the rest, no more marketing mail goes to it
    if address and (report.kind == "complaint" or report.hard):
        reason = "complaint" if report.kind == "complaint" else "bounced"
        detail = (f"abuse report ({report.diagnostic})" if report.kind == "complaint"
                  else f"bounce {report.status}: {report.diagnostic}")
        await asyncio.to_thread(ledger.suppress, address, reason, found.lead if found else "", detail)
        # the list keeps its first reason: say the one it holds (a complaint after a bounce)
        kept = await asyncio.to_thread(ledger.suppressed, address) or reason
        out.done.append(f"address suppressed ({kept})")
    if found is None:
        out.why = ("no delivery in the ledger matches the report (no X-Leadflow-Id or Message-ID of "
                   "ours, no e-mail sent to its recipient)")
        return out
    kind = "complaint" if report.kind == "complaint" else out.bounce or "hard"
    if not await asyncio.to_thread(_keep, ledger, found, kind, report.status, report.diagnostic, now):
        out.why = "this report was taken before"
        return out
    out.done.append("delivery marked bounced" if kind == "hard" else f"{kind} recorded for the delivery")
    digest = delivery_digest(found.key)
    at = datetime.fromtimestamp(now, timezone.utc).isoformat()
    if report.kind == "complaint":
        event = {"id": f"complaint-{digest}", "type": "complaint", "at": at,
                 "data": {"content": found.content, "delivery": digest, "feedback_type": report.diagnostic}}
    else:
        named = bounce_id(found.key) if report.hard else f"soft-bounce-{digest}"
        event = {"id": named, "type": "email_bounce", "at": at,
                 "data": {"hard": report.hard, "content": found.content, "status": report.status,
                          "reason": report.diagnostic[:300], "via": "dsn"}}
    try:
        told = await tell(found.lead, event)
    except BaseException:
        # Temporal did not answer: forgotten, so the same report posted again does it all again
        # (the event's id keeps the lead from taking it twice)
        await asyncio.to_thread(_forget, ledger, found.key, kind)
        raise
    if told:
        out.done.append(f"{event['type']} sent to the lead")
    else:
        out.why = f"the lead did not take {event['type']} (see the log)"
    return out


def _forget(ledger: Database, key: str, kind: str) -> None:
    with ledger.writing() as db:
        db.execute(mail_reports.delete().where(mail_reports.c.key == key, mail_reports.c.kind == kind))


def telling(client: Client, settings: Settings) -> Tell:
    """`tell` for act(): the event delivered to its lead as leadflow's own (no door's check). A
    lead that is no more is logged (a retry would not find it either); Temporal not answering
    raises, and the API answers 503."""

    async def tell(lead: str, event: dict[str, Any]) -> bool:
        try:
            await deliver(client, settings, event, key=lead, door="inbound")
            return True
        except IntakeError as err:
            log.warning("%s for %s not passed on: %s", event["type"], lead, err,
                        extra={"lead_id": lead, "event_id": event.get("id")})
            return False

    return tell


async def receive(raw: bytes, ledger: Database, tell: Tell) -> Outcome:
    """A raw message in, what was done out; raises NotAReport."""
    return await act(ledger, parse(raw), tell)


def looks_like_report(raw: bytes) -> bool:
    """A cheap test before parsing: the sink sees every e-mail leadflow sends, few of them reports."""
    return b"multipart/report" in raw[:65536].lower()


def for_sink(client: Client, settings: Settings) -> Callable[[bytes], Coroutine[Any, Any, Outcome]]:
    """What the local sink of `make up` calls with a report it received: `receive` run on this
    loop (the one the Temporal client belongs to), awaited from the sink's own thread and loop."""
    loop = asyncio.get_running_loop()
    opened: list[Database] = []

    async def here(raw: bytes) -> Outcome:
        if not opened:
            opened.append(await asyncio.to_thread(Database.of, settings))
        return await receive(raw, opened[0], telling(client, settings))

    async def take(raw: bytes) -> Outcome:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(here(raw), loop))

    return take
