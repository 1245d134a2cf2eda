"""SMTP as production servers speak it: STARTTLS on the submission port and TLS from the first
byte, each with a login, against aiosmtpd on loopback with a certificate made for the test
(trusted through SSL_CERT_FILE, as a private CA would be: leadflow verifies certificates)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from leadflow.delivery.smtp import Mailer, SendError, SmtpConfig
from tests.support.temporal_harness import free_port

MESSAGE = (b"From: news@acme.example\r\nTo: kim@acme.example\r\nSubject: hello\r\n"
           b"Message-ID: <tls-1@acme.example>\r\n\r\nhello over TLS\r\n")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a certificate with")
    where = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(where / "key.pem"), "-out", str(where / "cert.pem"),
                    "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return where / "cert.pem", where / "key.pem"


class Keep:
    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.got.append((session.authenticated and session.auth_data.login.decode(), envelope.content))
        return "250 kept"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"leadflow" and auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_login_and_send_over_tls(mode, certificate, monkeypatch):
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    keep = Keep()
    port = free_port()
    # implicit TLS: aiosmtpd does not see the wrapped socket as TLS, so it is told AUTH may go
    tls = ({"tls_context": context, "require_starttls": True} if mode == "starttls"
           else {"ssl_context": context, "auth_require_tls": False})
    server = Controller(keep, hostname="127.0.0.1", port=port, authenticator=authenticator,
                        auth_required=True, server_hostname="localhost",
                        **tls)
    server.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the test's CA, as a company's private one
    try:
        mailer = Mailer(SmtpConfig("localhost", port, "leadflow", "s3cret", mode, timeout=10))
        mailer.send(MESSAGE, "news@acme.example", "kim@acme.example")
        mailer.send(MESSAGE, "news@acme.example", "kim@acme.example")  # on the kept connection
        deadline = time.monotonic() + 10
        while len(keep.got) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [who for who, _ in keep.got] == ["leadflow", "leadflow"]
        assert b"hello over TLS" in keep.got[0][1]
        mailer.close()
        wrong = Mailer(SmtpConfig("localhost", port, "leadflow", "guess", mode, timeout=10))
        with pytest.raises(SendError, match="login refused"):
            wrong.send(MESSAGE, "news@acme.example", "kim@acme.example")
        monkeypatch.delenv("SSL_CERT_FILE")
        monkeypatch.setenv("SSL_CERT_DIR", "/nonexistent")
        untrusted = Mailer(SmtpConfig("localhost", port, "leadflow", "s3cret", mode, timeout=10))
        with pytest.raises(SendError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            untrusted.send(MESSAGE, "news@acme.example", "kim@acme.example")
    finally:
        server.stop()
