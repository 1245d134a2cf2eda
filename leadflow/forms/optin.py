"""Double opt-in: a new lead's address waits on the suppression list (reason `unconfirmed`, so the
delivery ledger's check holds back every marketing e-mail, the policy's welcome included, which
is recorded `suppressed`), a confirmation e-mail with a signed link goes out through leadflow's
SMTP settings and is kept in the delivery ledger like every other e-mail, and the link, when
followed, lifts that suppression and no other (an `unsubscribed` or `bounced` address stays
suppressed: the first reason stays, and only `unconfirmed` is ever lifted)."""

from __future__ import annotations

import html
import logging
import os
import socket
import time
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import delete

from leadflow.db.database import Database, address_hash
from leadflow.db.schema import suppressions
from leadflow.delivery import mime
from leadflow.delivery.message import message_id
from leadflow.delivery.smtp import Mailer, SendError, SmtpConfig
from leadflow.forms.model import Form
from leadflow.settings import Settings

log = logging.getLogger("leadflow.forms")
UNCONFIRMED = "unconfirmed"
LINK_DAYS = 30  # a confirmation link older than this asks for the form again
SALT = "leadflow.form-confirm"


class BadToken(ValueError):
    pass


@dataclass(frozen=True)
class Pending:
    """What a confirmation link says: the form, the lead, its address's hash, the consent's
    version and when the link was signed."""

    form: str
    lead: str
    address: str  # sha256 of the address: the link carries no address
    version: str
    signed: int

    @property
    def event_id(self) -> str:
        return f"confirm-{self.form}-{self.lead}-{self.signed}"


class OptIn:
    def __init__(self, settings: Settings, ledger: Database) -> None:
        self.settings, self.ledger = settings, ledger
        # itsdangerous signs with the last key and checks every one: the keys before a rotation
        # (LEADFLOW_OLD_SECRETS) keep links sent before it working
        self._signer = URLSafeTimedSerializer(list(reversed(settings.keys_for("form-confirm"))), salt=SALT)

    def link(self, form: Form, lead: str, address: str) -> str:
        version = form.consent.version if form.consent else ""
        token = self._signer.dumps({"f": form.name, "l": lead, "a": address_hash(address), "v": version,
                                    "t": int(time.time())})
        return f"{self.settings.public}/f/{form.name}/confirm?t={token}"

    def read(self, form: Form, token: str) -> Pending:
        """The link's promise, or BadToken (changed, another form's, or older than LINK_DAYS)."""
        try:
            data: Any = self._signer.loads(token, max_age=LINK_DAYS * 86400)
        except SignatureExpired:
            raise BadToken("expired") from None
        except BadData:
            raise BadToken("bad") from None
        if not isinstance(data, dict) or data.get("f") != form.name:
            raise BadToken("bad")
        return Pending(form.name, str(data["l"]), str(data["a"]), str(data["v"]), int(data["t"]))

    def hold(self, address: str, lead: str, form: Form) -> None:
        """No marketing e-mail to this address until the link is followed (an address already
        suppressed keeps its reason)."""
        self.ledger.suppress(address, UNCONFIRMED, lead,
                             f"form {form.name}: waiting for its confirmation link")

    def release(self, digest: str) -> None:
        """Lift the `unconfirmed` suppression of the address whose hash is `digest` (no other)."""
        with self.ledger.writing() as db:
            db.execute(delete(suppressions).where(suppressions.c.address_hash.in_(self.ledger.pseudonyms(digest)),
                                                  suppressions.c.reason == UNCONFIRMED))

    def send(self, form: Form, *, to: str, lead: str, key: str) -> str:
        """Send the confirmation e-mail (blocking: call it off the event loop); its ledger status
        (sent, failed, skipped, or what an earlier send of the same key left)."""
        s = self.settings
        subject = f"form-confirmation/{form.name}"
        if not s.smtp_host:
            return self.ledger.record(key, kind="email", lead=lead, target=to, subject=subject,
                                      status="skipped", detail="no SMTP server (LEADFLOW_SMTP_HOST)")
        mid = message_id(key, s.mail_from)
        # no address given: the address is suppressed (unconfirmed) by now, and this is the one
        # e-mail that must reach it
        claim = self.ledger.claim(key, kind="email", lead=lead, target=to, subject=subject,
                                  owner=f"{socket.gethostname()}:{os.getpid()}:forms",
                                  lease=max(60.0, s.delivery_timeout * 3), message_id=mid)
        if claim.outcome != "claimed":
            return claim.status
        mailer = Mailer(SmtpConfig(s.smtp_host, s.smtp_port, s.smtp_user, s.smtp_password,
                                   s.smtp_tls, s.delivery_timeout), pool=1)  # type: ignore[arg-type]
        try:
            message = self._message(form, to, mid, self.link(form, lead, to))
            mailer.send(message, mime.mailbox(s.mail_from), to)
        except (SendError, OSError) as err:
            detail = err.detail if isinstance(err, SendError) else f"{type(err).__name__}: {err}"
            log.warning("form %s: the confirmation e-mail to lead %s was not sent: %s", form.name, lead,
                        detail, extra={"lead_id": lead})
            self.ledger.mark(key, "failed", detail)
            return "failed"
        finally:
            mailer.close()
        self.ledger.mark(key, "sent", message_id=mid)
        return "sent"

    def _message(self, form: Form, to: str, mid: str, link: str) -> bytes:
        text = form.confirmation_text.replace("{link}", link)
        paragraphs = "".join(
            f"<p>{html.escape(p).replace(html.escape(link), _anchor(link))}</p>\n"
            for p in text.split("\n\n") if p.strip())
        return mime.compose([
            ("From", mime.address(self.settings.mail_from)),
            ("To", mime.address(to)),
            ("Subject", mime.header(form.confirmation_subject)),
            ("Date", formatdate(usegmt=True)),
            ("Message-ID", mid),
            ("X-Leadflow-Content", mime.clean(f"form-confirmation/{form.name}")),
        ], text, paragraphs)


def _anchor(link: str) -> str:
    return f'<a href="{html.escape(link)}">{html.escape(link)}</a>'
