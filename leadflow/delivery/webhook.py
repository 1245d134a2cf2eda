"""Hand-offs and escalations to the sales team's CRM: a JSON POST signed with the shared
secret, `X-Leadflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (the
scheme Stripe made familiar), and `Idempotency-Key`. The CRM answers on /v1/crm/... with the
same scheme, checked here with a window against replays."""

from __future__ import annotations

import base64
import hmac
import http.client
import re
import select
import ssl
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

WINDOW = 300  # seconds a signed request stays good
# Bytes of a CRM's answer read (issue 22): what the ledger keeps of it is its first 300
# characters, and a receiver must not make a worker read without end. The rest is dropped with
# the connection. (The setting it would be: LEADFLOW_WEBHOOK_MAX_ANSWER_BYTES.)
MAX_ANSWER = 16 * 1024

# `scheme://user:password@` in a URL: what a webhook URL may carry as its login (up to the
# authority's last @, as urllib reads it: a password may hold an @ of its own)
_LOGIN = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")


def masked(text: str) -> str:
    """`text` with the login of every URL in it hidden (`https://***@crm.example/hooks`): what is
    shown or logged of a webhook's target, never its password."""
    return _LOGIN.sub(r"\1***@", text) if "@" in text else text


class BadSignature(ValueError):
    pass


def signature(secret: str, body: bytes, t: int) -> str:
    mac = hmac.digest(secret.encode(), f"{t}.".encode() + body, "sha256").hex()
    return f"t={t},v1={mac}"


def verify(secret: str, header: str | None, body: bytes, now: float | None = None,
           window: float = WINDOW) -> int:
    """The signed time, when `header` signs `body` with `secret` within the window."""
    if not header:
        raise BadSignature("missing X-Leadflow-Signature")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        raise BadSignature("X-Leadflow-Signature has no t=<unix seconds>") from None
    now = time.time() if now is None else now
    if abs(now - t) > window:
        raise BadSignature(f"signed {int(now - t)} s ago; a signature is good for {int(window)} s")
    expected = signature(secret, body, t).partition(",v1=")[2]
    if not any(hmac.compare_digest(expected, v) for v in parts.get("v1", [])):
        raise BadSignature("the signature does not match the body")
    return t


class PostError(Exception):
    """The POST did not get an answer (connection refused, reset, timed out, not HTTP)."""


@dataclass(frozen=True)
class Answer:
    status_code: int
    reason_phrase: str
    text: str

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


class Poster:
    """POSTs for every webhook a worker sends, over HTTP/1.1 with kept-alive connections: one per
    thread and origin, so threads never wait on each other for a connection. http.client rather
    than httpx: a webhook needs no cookies, redirects or auth flows, and httpx's handling of them
    cost more CPU than the rest of a delivery (0.8 ms a POST against 0.35 ms). Redirects are not
    followed (a 3xx is a refusal to look at); the usual proxy settings (HTTPS_PROXY, HTTP_PROXY,
    NO_PROXY) are honoured."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PostError(f"not an http(s) URL: {masked(url)!r}")
        conn, proxied = self._connection(parts)
        target = url if proxied and parts.scheme == "http" else (parts.path or "/") + (
            f"?{parts.query}" if parts.query else "")
        sent = dict(headers)
        if parts.username is not None:  # https://user:password@host/... as a basic login
            login = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            sent.setdefault("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
        try:
            conn.request("POST", target, body=body, headers=sent)
            response = conn.getresponse()
            raw = response.read(MAX_ANSWER + 1)
            if len(raw) > MAX_ANSWER or not response.isclosed():  # more than that: never read
                conn.close()  # the rest goes with the connection; the next POST opens a fresh one
                raw = raw[:MAX_ANSWER]
        except (OSError, http.client.HTTPException) as err:
            conn.close()  # whatever state it is in, the next POST starts on a fresh connection
            raise PostError(f"{type(err).__name__}: {err}" if str(err) else type(err).__name__) from None
        try:
            text = raw.decode(response.headers.get_content_charset() or "utf-8", "replace")
        except LookupError:  # a charset Python does not know
            text = raw.decode("utf-8", "replace")
        return Answer(response.status, response.reason, text)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()

    def _connection(self, parts: urllib.parse.SplitResult) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection to the URL's origin; one the server closed while it was idle
        (it is readable: the end of the stream) is closed here and opened again on use."""
        conns: dict[tuple[str, str, int | None], tuple[http.client.HTTPConnection, bool]] | None
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        origin = (parts.scheme, parts.hostname or "", parts.port)
        known = conns.get(origin)
        if known is None:
            known = conns[origin] = self._open(parts)
            with self._lock:
                self._all.append(known[0])
        elif known[0].sock is not None and select.select([known[0].sock], [], [], 0)[0]:
            known[0].close()
        return known

    def _open(self, parts: urllib.parse.SplitResult) -> tuple[http.client.HTTPConnection, bool]:
        host, port = parts.hostname or "", parts.port
        proxy = urllib.request.getproxies().get(parts.scheme)
        if proxy and urllib.request.proxy_bypass(host):
            proxy = None
        if proxy:
            at = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            where = (at.hostname or "", at.port or 80)
            if parts.scheme == "http":
                return http.client.HTTPConnection(*where, timeout=self.timeout), True
            conn = http.client.HTTPSConnection(*where, timeout=self.timeout, context=self._context())
            conn.set_tunnel(host, port or 443)
            return conn, True
        if parts.scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                               context=self._context()), False
        return http.client.HTTPConnection(host, port, timeout=self.timeout), False

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:  # made once: loading the CA store costs milliseconds
            self._tls = ssl.create_default_context()
        return self._tls
