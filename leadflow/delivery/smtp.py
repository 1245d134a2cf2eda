"""Sending over SMTP, with a small pool of open connections (a handshake per message costs more
than the message on a busy relay). Failures are sorted into what a retry may fix (4xx replies,
a dropped connection, wrong credentials ops can correct) and what it cannot: a 5xx for the
recipient is a hard bounce, any other 5xx a permanent failure."""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from leadflow.delivery import mime

TlsMode = Literal["none", "starttls", "tls"]
DEFAULT_PORTS: dict[str, int] = {"none": 25, "starttls": 587, "tls": 465}


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 0  # 0: the usual port of the TLS mode
    user: str = ""
    password: str = ""
    tls: TlsMode = "none"
    timeout: float = 10.0

    @property
    def real_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.tls]


class SendError(Exception):
    def __init__(self, detail: str, *, permanent: bool = False, bounce: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent or bounce
        self.bounce = bounce


class Mailer:
    def __init__(self, config: SmtpConfig, pool: int = 8) -> None:
        self.config = config
        self._idle: list[smtplib.SMTP] = []
        self._pool = pool
        self._lock = threading.Lock()

    def send(self, msg: bytes, sender: str, to: str, committing: Callable[[], None] | None = None) -> None:
        """`committing` is called just before the message itself goes out: from then on the
        server may have it, whatever happens to this process (leadflow.delivery.pool)."""
        conn, reused = self._checkout()
        try:
            try:
                refused = _transact(conn, sender, to, msg, committing)
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                if not reused:
                    raise
                # an idle connection the server had closed: nothing was accepted on it
                _quietly_close(conn)
                conn, reused = self._connect(), False
                refused = _transact(conn, sender, to, msg, committing)
        except smtplib.SMTPRecipientsRefused as err:
            self._checkin(conn)
            code, said = next(iter(err.recipients.values()), (0, b""))
            raise SendError(f"{code} {_text(said)}", bounce=code >= 500) from None
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as err:
            self._checkin(conn)
            raise SendError(f"{err.smtp_code} {_text(err.smtp_error)}",
                            permanent=err.smtp_code >= 500) from None
        except smtplib.SMTPAuthenticationError as err:
            _quietly_close(conn)
            raise SendError(f"SMTP login refused ({err.smtp_code}); check LEADFLOW_SMTP_USER and "
                            "LEADFLOW_SMTP_PASSWORD") from None
        except (smtplib.SMTPException, OSError) as err:
            _quietly_close(conn)
            where = f"{self.config.host}:{self.config.real_port}"
            raise SendError(f"SMTP {where}: {err or type(err).__name__}") from None
        if refused:  # only recipient here; kept for servers that accept some and refuse others
            code, said = next(iter(refused.values()))
            self._checkin(conn)
            raise SendError(f"{code} {_text(said)}", bounce=code >= 500)
        self._checkin(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _quietly_close(conn)

    def _checkout(self) -> tuple[smtplib.SMTP, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    def _checkin(self, conn: smtplib.SMTP) -> None:
        with self._lock:
            if len(self._idle) < self._pool:
                self._idle.append(conn)
                return
        _quietly_close(conn)

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        try:
            if c.tls == "tls":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(c.host, c.real_port, timeout=c.timeout,
                                                      context=ssl.create_default_context())
            else:
                conn = smtplib.SMTP(c.host, c.real_port, timeout=c.timeout)
                if c.tls == "starttls":
                    conn.starttls(context=ssl.create_default_context())
            if c.user:
                conn.login(c.user, c.password)
        except smtplib.SMTPAuthenticationError as err:
            raise SendError(f"SMTP login refused ({err.smtp_code}); check LEADFLOW_SMTP_USER and "
                            "LEADFLOW_SMTP_PASSWORD") from None
        except (smtplib.SMTPException, OSError) as err:
            raise SendError(f"SMTP {c.host}:{c.real_port}: {err or type(err).__name__}") from None
        return conn


def _transact(conn: smtplib.SMTP, sender: str, to: str, msg: bytes,
              committing: Callable[[], None] | None = None) -> dict[str, tuple[int, bytes]]:
    """smtplib's sendmail for one recipient, as the same commands and the same errors, without
    its per-message costs where they buy nothing: the address parser for plain addresses and a
    regular expression over the whole message for dot-stuffing. Anything else goes to sendmail."""
    if not (mime.PLAIN.fullmatch(sender) and mime.PLAIN.fullmatch(to)):
        if committing is not None:  # sendmail's steps are its own: from its first one on
            committing()
        return conn.sendmail(sender, [to], msg)
    conn.ehlo_or_helo_if_needed()
    size = f" SIZE={len(msg)}" if conn.does_esmtp and conn.has_extn("size") else ""
    code, said = conn.docmd("MAIL", f"FROM:<{sender}>{size}")
    if code != 250:
        _abandon(conn, code)
        raise smtplib.SMTPSenderRefused(code, said, sender)
    code, said = conn.docmd("RCPT", f"TO:<{to}>")
    if code not in (250, 251):
        _abandon(conn, code)
        raise smtplib.SMTPRecipientsRefused({to: (code, said)})
    code, said = conn.docmd("DATA")
    if code != 354:
        _abandon(conn, code)
        raise smtplib.SMTPDataError(code, said)
    stuffed = (b"." if msg[:1] == b"." else b"") + msg.replace(b"\r\n.", b"\r\n..")
    if committing is not None:
        committing()
    conn.send(stuffed + (b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n"))
    code, said = conn.getreply()
    if code != 250:
        _abandon(conn, code)
        raise smtplib.SMTPDataError(code, said)
    return {}


def _abandon(conn: smtplib.SMTP, code: int) -> None:
    """What smtplib does after a refusal: a 421 means the server is closing the connection."""
    if code == 421:
        conn.close()
    else:
        with contextlib.suppress(smtplib.SMTPServerDisconnected):
            conn.rset()


def _text(said: bytes | str) -> str:
    return said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)


def _quietly_close(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        conn.close()
