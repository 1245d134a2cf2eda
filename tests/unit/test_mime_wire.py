"""A nurture e-mail as bytes and on the wire: what the standard library's parser reads back from
leadflow's own MIME writer (plain ASCII as it is, anything else quoted-printable, non-ASCII
headers as encoded words), and what an SMTP server receives through the Mailer's own
transaction (dot-stuffing, a refused recipient, an address smtplib must quote)."""

from __future__ import annotations

import email
import email.policy

import pytest

from leadflow.delivery import message
from leadflow.delivery.content import Rendered
from leadflow.delivery.links import Links, Mail
from leadflow.delivery.smtp import Mailer, SendError, SmtpConfig
from tests.support.wire import SmtpCatcher

LINKS = Links("mime-test-secret", "https://leadflow.example")
MAIL = Mail(lead="lead-1", delivery="0123456789abcdef", content="welcome", sent=1_790_000_000)
UNSUBSCRIBE = LINKS.unsubscribe(MAIL)


def built(rendered: Rendered, to: str = "rita@acme.example") -> bytes:
    return message.build(rendered, key="k-1", sender="Acme <news@acme.example>", to=to, mail=MAIL,
                         links=LINKS, unsubscribe_url=UNSUBSCRIBE)


def parts(raw: bytes) -> tuple[email.message.EmailMessage, dict[str, tuple[str, str]]]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    found = {}
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            # the parser keeps the wire's CRLF in a 7bit part and not in a decoded one
            text = part.get_content().replace("\r\n", "\n")
            found[part.get_content_subtype()] = (part["Content-Transfer-Encoding"], text)
    return msg, found  # type: ignore[return-value]


def test_ascii_goes_as_it_is_and_the_rest_quoted_printable_and_all_reads_back() -> None:
    plain = built(Rendered("Welcome, Rita", "Hi Rita,\nsee you.\n", "<p>Hi Rita,</p>\n"))
    msg, found = parts(plain)
    assert found["plain"][0] == "7bit" and found["plain"][1].startswith("Hi Rita,\nsee you.\n")
    assert found["html"][0] == "7bit" and "<p>Hi Rita,</p>" in found["html"][1]

    long_line = " ".join(["word"] * 300)  # 1,499 characters on one line: more than SMTP carries
    accents = built(Rendered("Bienvenue, Zoë — 20 €", f"Salut Zoë,\n{long_line}\n", f"<p>{long_line}</p>\n"),
                    to="Zoë Brontë <zoe@acme.example>")
    msg, found = parts(accents)
    assert msg["Subject"] == "Bienvenue, Zoë — 20 €" and msg["To"].addresses[0].display_name == "Zoë Brontë"
    assert found["plain"][0] == "quoted-printable"
    assert found["plain"][1].startswith(f"Salut Zoë,\n{long_line}")
    assert found["html"][0] == "quoted-printable" and long_line in found["html"][1]
    assert max(len(line) for line in accents.split(b"\r\n")) <= 998
    assert all(line.isascii() for line in accents.split(b"\r\n"))


def test_the_mailer_stuffs_dots_reports_refusals_and_quotes_what_needs_quoting() -> None:
    text = ".starts with a dot\n..two of them\n.\nand a line that is one dot above\n"
    raw = built(Rendered("Dots", text, "<p>dots</p>\n"))
    with SmtpCatcher() as server:
        mailer = Mailer(SmtpConfig("127.0.0.1", server.port))
        try:
            mailer.send(raw, "news@acme.example", "rita@acme.example")
            # an address with a space in its quoted local part goes through smtplib's own quoting
            mailer.send(raw, "news@acme.example", '"rita smith"@acme.example')
            with pytest.raises(SendError) as refused:
                mailer.send(raw, "news@acme.example", "bounce-me@acme.example")
            mailer.send(raw, "news@acme.example", "cleo@acme.example")  # the connection still works
        finally:
            mailer.close()
        got = list(server.messages)
    assert refused.value.bounce and "550" in refused.value.detail
    assert len(got) == 3  # the refused one is not among them
    for msg in got:
        assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n").startswith(text)
