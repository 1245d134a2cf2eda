"""Delivery as Temporal activities: nurture e-mail over SMTP, hand-offs and escalations to the
CRM's webhook. Each claims its key in the shared ledger before it sends and marks it after (see
leadflow.db.database); Temporal retries with backoff what a retry may fix (the activity raises), and
a final answer (sent, bounced, refused, suppressed, skipped) comes back as a DeliveryResult for
the workflow to act on. Sync: smtplib and the HTTP client block, on the worker's threads. With a
MailPool, an e-mail is rendered, written and sent in a process of its own between the claim and
the mark (leadflow.delivery.pool)."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, cast, get_args

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from leadflow.db.database import Claim, Database, address_hash
from leadflow.delivery import message
from leadflow.delivery.content import ContentStore, NoTemplate
from leadflow.delivery.dkim_sign import DkimSigner
from leadflow.delivery.links import Links
from leadflow.delivery.pool import Lost, MailPool, compose_and_send, mail_of
from leadflow.delivery.preferences import preferences_of
from leadflow.delivery.smtp import Mailer, SendError
from leadflow.delivery.webhook import Poster, PostError, signature
from leadflow.ops import metrics

USER_AGENT = "leadflow-webhook/1"
RETRY_LATER = (408, 425, 429)  # 4xx answers that ask for a retry rather than refuse


class EmailRequest(BaseModel):
    key: str
    lead: str
    content: str
    to: str | None = None
    profile: dict[str, Any] = Field(default_factory=dict)
    withheld: str | None = None
    max_attempts: int = 0  # the workflow's retry policy's; the last attempt records `failed`


class WebhookRequest(BaseModel):
    key: str
    kind: Literal["handoff", "escalation"]
    lead: str
    queue: str
    task: str
    idempotency_key: str
    body: dict[str, Any] = Field(default_factory=dict)
    max_attempts: int = 0


Outcome = Literal["sent", "bounced", "failed", "suppressed", "skipped"]


class Row(TypedDict):
    """What the ledger keeps of a delivery besides its key and status."""

    kind: str
    lead: str
    target: str
    subject: str


class DeliveryResult(BaseModel):
    key: str
    status: Outcome
    detail: str = ""
    message_id: str = ""
    http_status: int | None = None


@dataclass
class Delivery:
    """Everything a worker delivers with; None where settings leave a channel unconfigured."""

    ledger: Database
    content: ContentStore
    links: Links
    sender: str
    mailer: Mailer | None
    poster: Poster
    webhook_for: Callable[[str], str]  # queue -> URL ("" when none)
    webhook_secret: str
    public_url: str
    pool: MailPool | None = None  # e-mail written and sent in processes of its own (else here, by mailer)
    dkim: DkimSigner | None = None  # signs e-mail sent here (a pool's processes have their own)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        if self.mailer is not None:
            self.mailer.close()
        self.poster.close()
        self.ledger.close()


class DeliveryActivities:
    def __init__(self, delivery: Delivery) -> None:
        self.d = delivery

    @activity.defn(name="send_email")
    def send_email(self, req: EmailRequest) -> DeliveryResult:
        return _counted("email", self._send_email(req))

    def _dropped_topic(self, req: EmailRequest) -> str | None:
        """The content's topic, when the person dropped it on the preference page."""
        try:
            topic = self.d.content.get(req.content).topic
        except NoTemplate:
            return None  # said where the template is rendered, as before
        if topic is None or not req.to:
            return None
        return topic if preferences_of(self.d.ledger).drops(req.to, topic) else None

    def _send_email(self, req: EmailRequest) -> DeliveryResult:
        d = self.d
        row = Row(kind="email", lead=req.lead, target=req.to or "", subject=req.content)
        if req.withheld:
            return self._not_sent(req.key, row, "suppressed", req.withheld)
        if not req.to:
            return self._not_sent(req.key, row, "skipped", "the lead has no e-mail address")
        if d.mailer is None:
            return self._not_sent(req.key, row, "skipped", "no SMTP server configured (LEADFLOW_SMTP_HOST)")
        if (dropped := self._dropped_topic(req)) is not None:
            return self._not_sent(req.key, row, "suppressed",
                                  f"the person dropped the topic {dropped!r} (preference page)")
        mid = message.message_id(req.key, d.sender)
        # an unsubscribed or bounced address is never claimed, whatever the lead's policy says
        claim = d.ledger.claim(req.key, **row, owner=_owner(), lease=_lease(), message_id=mid, address=req.to)
        if (done := _settled(req.key, claim)) is not None:
            return done
        try:
            template = d.content.get(req.content)
            mail = mail_of(req.key, req.lead, req.content, address_hash(req.to))
            if d.pool is not None:
                d.pool.send(template, mail, key=req.key, to=req.to, profile=req.profile)
            else:
                compose_and_send(d.mailer, d.links, d.sender, template, mail, key=req.key, to=req.to,
                                 profile=req.profile, dkim=d.dkim)
        except NoTemplate as err:
            return self._again(req.key, req.max_attempts, str(err))
        except Lost as err:
            if err.maybe_sent:  # as if this worker had died: the claim's lease runs out, then a reclaim
                raise ApplicationError(f"{err}; the SMTP server may have the message",
                                       type="DeliveryLost") from None
            return self._again(req.key, req.max_attempts, str(err))
        except SendError as err:
            if err.bounce:
                d.ledger.suppress(req.to, "bounced", req.lead, err.detail)
                d.ledger.mark(req.key, "bounced", f"hard bounce: {err.detail}")
                return DeliveryResult(key=req.key, status="bounced", detail=err.detail, message_id=mid)
            if err.permanent:
                d.ledger.mark(req.key, "failed", err.detail)
                return DeliveryResult(key=req.key, status="failed", detail=err.detail, message_id=mid)
            return self._again(req.key, req.max_attempts, err.detail)
        d.ledger.mark(req.key, "sent", message_id=mid)
        return DeliveryResult(key=req.key, status="sent", message_id=mid)

    @activity.defn(name="post_webhook")
    def post_webhook(self, req: WebhookRequest) -> DeliveryResult:
        return _counted(req.kind, self._post_webhook(req))

    def _post_webhook(self, req: WebhookRequest) -> DeliveryResult:
        d = self.d
        url = d.webhook_for(req.queue)
        row = Row(kind=req.kind, lead=req.lead, target=url, subject=req.task)
        if not url:
            return self._not_sent(req.key, row, "skipped", f"no webhook configured for queue {req.queue!r} "
                                                           "(LEADFLOW_HANDOFF_WEBHOOK_URL)")
        claim = d.ledger.claim(req.key, **row, owner=_owner(), lease=_lease(), message_id=req.idempotency_key)
        if (done := _settled(req.key, claim)) is not None:
            return done
        body = json.dumps({**req.body, "callbacks": self._callbacks(req.task)},
                          separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "Idempotency-Key": req.idempotency_key, "X-Leadflow-Event": str(req.body.get("event", "")),
                   "X-Leadflow-Signature": signature(d.webhook_secret, body, int(time.time()))}
        try:
            answer = d.poster.post(url, body, headers)
        except PostError as err:
            return self._again(req.key, req.max_attempts, str(err))
        said = f"HTTP {answer.status_code} {answer.reason_phrase}: {answer.text[:300]}".rstrip(": ")
        if answer.is_success:
            d.ledger.mark(req.key, "sent", f"HTTP {answer.status_code}", message_id=req.idempotency_key)
            return DeliveryResult(key=req.key, status="sent", http_status=answer.status_code,
                                  message_id=req.idempotency_key)
        if 400 <= answer.status_code < 500 and answer.status_code not in RETRY_LATER:
            d.ledger.mark(req.key, "failed", f"refused: {said}")
            return DeliveryResult(key=req.key, status="failed", detail=said, http_status=answer.status_code,
                                  message_id=req.idempotency_key)
        return self._again(req.key, req.max_attempts, said, answer.status_code)

    def _callbacks(self, task: str) -> dict[str, str]:
        base = f"{self.d.public_url}/v1/crm/tasks/{task}"
        return {"accept": f"{base}/accept", "reject": f"{base}/reject"}

    def _not_sent(self, key: str, row: Row, status: Outcome, detail: str) -> DeliveryResult:
        recorded = self.d.ledger.record(key, **row, status=status, detail=detail)
        if recorded == "sent":  # an earlier attempt did send it (settings changed since)
            return DeliveryResult(key=key, status="sent")
        return DeliveryResult(key=key, status=status, detail=detail)

    def _again(self, key: str, max_attempts: int, detail: str,
               http_status: int | None = None) -> DeliveryResult:
        """A failure a retry may fix: raise for Temporal to retry, or on the last attempt record
        it as failed."""
        attempt = activity.info().attempt
        if max_attempts and attempt >= max_attempts:
            self.d.ledger.mark(key, "failed", f"gave up after {attempt} attempts: {detail}")
            return DeliveryResult(key=key, status="failed", detail=detail, http_status=http_status)
        self.d.ledger.mark(key, "retrying", f"attempt {attempt}: {detail}")
        raise ApplicationError(detail, type="DeliveryRetry")


def _counted(kind: str, result: DeliveryResult) -> DeliveryResult:
    """How each delivery ended, by kind (email, handoff, escalation) and status; a retry is not an end."""
    metrics.count("leadflow_deliveries", "Deliveries by kind and how they ended",
                  {"kind": kind, "status": result.status}, on=activity.metric_meter())
    return result


def _settled(key: str, claim: Claim) -> DeliveryResult | None:
    if claim.outcome == "claimed":
        return None
    if claim.outcome == "busy":  # another attempt holds the claim; ask again later
        raise ApplicationError("another attempt is sending this delivery", type="DeliveryBusy")
    status = cast(Outcome, claim.status) if claim.status in get_args(Outcome) else "failed"
    return DeliveryResult(key=key, status=status, detail=claim.detail, message_id=claim.message_id)


def _lease() -> float:
    """As long as Temporal lets the attempt run: after that it retries elsewhere."""
    timeout = activity.info().start_to_close_timeout
    return timeout.total_seconds() if timeout else 60.0


_HOST = socket.gethostname()


def _owner() -> str:
    info = activity.info()
    return f"{_HOST}:{os.getpid()}:{info.activity_id}#{info.attempt}"[:256]
