"""The parsers of returned mail (leadflow.delivery.inbound.parse) on samples shaped as the RFCs'
own examples: RFC 3464's delivery status notifications (a hard failure with the original's
headers, a soft one, a delay) and RFC 5965's abuse report (with the original message, and with
the recipient redacted as providers do)."""

from __future__ import annotations

import asyncio

import pytest

from leadflow.db.database import Database
from leadflow.delivery.inbound import NotAReport, act, looks_like_report, parse
from leadflow.delivery.links import delivery_digest

OURS = "<3f2a9c0e1b7d4a6f8e5c2b1a0d9e8f7a6b5c4d3e@acme.example>"


def dsn(action: str, status: str, *, original: str = "text/rfc822-headers", relay_id: bool = False) -> bytes:
    """A DSN as RFC 3464 section 10 writes them: the human part, the status fields (one block
    about the message, one per recipient), the returned message or its headers."""
    headers = (f"From: Acme <news@acme.example>\r\nTo: ana@example.org\r\nSubject: Welcome\r\n"
               f"Message-ID: {'<0100018c-relay-written@email.amazonses.com>' if relay_id else OURS}\r\n"
               f"X-Leadflow-Id: {OURS}\r\n")
    returned = (f"Content-Type: message/rfc822\r\n\r\n{headers}\r\nHello Ana\r\n"
                if original == "message/rfc822" else f"Content-Type: text/rfc822-headers\r\n\r\n{headers}")
    return (
        "Return-Path: <>\r\n"
        "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.org>\r\n"
        "To: news@acme.example\r\n"
        "Subject: Returned mail: see transcript for details\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        ' boundary="RAA14128.773615765/mx.example.org"\r\n'
        "\r\n"
        "--RAA14128.773615765/mx.example.org\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "   ----- The following addresses had delivery problems -----\r\n"
        "<ana@example.org>  (unrecoverable error)\r\n\r\n"
        "--RAA14128.773615765/mx.example.org\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n"
        "Arrival-Date: Tue, 1 Dec 2026 14:17:32 +0000\r\n\r\n"
        "Final-Recipient: RFC822; Ana@Example.org\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        "Remote-MTA: dns; mx2.example.org\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <ana@example.org>... User unknown\r\n"
        "Last-Attempt-Date: Tue, 1 Dec 2026 14:17:35 +0000\r\n\r\n"
        "--RAA14128.773615765/mx.example.org\r\n"
        f"{returned}\r\n"
        "--RAA14128.773615765/mx.example.org--\r\n").encode()


def arf(*, recipient: str = "ana@example.org", feedback: str = "abuse", with_original: bool = True) -> bytes:
    """An abuse report as RFC 5965 section B.2 writes one."""
    rcpt = f"Original-Rcpt-To: <{recipient}>\r\n" if recipient else ""
    original = (
        "--part1_13d.2e68ed54_boundary\r\n"
        "Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
        "From: Acme <news@acme.example>\r\n"
        f"To: {recipient or 'redacted@example.net'}\r\n"
        "Subject: Welcome\r\n"
        f"Message-ID: {OURS}\r\nX-Leadflow-Id: {OURS}\r\n"
        "Date: Thu, 8 Mar 2026 14:00:00 EDT\r\n\r\n"
        "Hello Ana\r\n\r\n") if with_original else ""
    return (
        "From: <abusedesk@example.com>\r\n"
        "Date: Thu, 8 Mar 2026 17:40:36 EDT\r\n"
        "Subject: FW: Welcome\r\n"
        "To: <abuse@acme.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=feedback-report;\r\n"
        '     boundary="part1_13d.2e68ed54_boundary"\r\n\r\n'
        "--part1_13d.2e68ed54_boundary\r\n"
        "Content-Type: text/plain; charset=\"US-ASCII\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        "This is an email abuse report for an email message received from IP\r\n"
        "192.0.2.1 on Thu, 8 Mar 2026 14:00:00 EDT.\r\n\r\n"
        "--part1_13d.2e68ed54_boundary\r\n"
        "Content-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: {feedback}\r\n"
        "User-Agent: SomeGenerator/1.0\r\n"
        "Version: 1\r\n"
        "Original-Mail-From: <news@acme.example>\r\n"
        f"{rcpt}"
        "Arrival-Date: Thu, 8 Mar 2026 14:00:00 EDT\r\n"
        "Reporting-MTA: dns; mail.example.com\r\n"
        "Source-IP: 192.0.2.1\r\n"
        "Authentication-Results: mail.example.com; spf=pass smtp.mail=news@acme.example\r\n"
        "Reported-Domain: acme.example\r\n\r\n"
        f"{original}"
        "--part1_13d.2e68ed54_boundary--\r\n").encode()


def test_a_hard_bounce_names_the_recipient_status_and_our_ids() -> None:
    report = parse(dsn("failed", "5.1.1"))
    assert report.kind == "bounce" and report.hard and report.status == "5.1.1"
    assert report.recipient == "ana@example.org"  # the address type dropped, lower-cased
    assert report.ids == (OURS,)
    assert "User unknown" in report.diagnostic


def test_a_soft_bounce_and_a_relay_that_rewrote_the_message_id() -> None:
    report = parse(dsn("failed", "4.2.2", original="message/rfc822", relay_id=True))
    assert report.kind == "bounce" and not report.hard and report.status == "4.2.2"
    # X-Leadflow-Id first: the relay's own Message-ID names nothing in the ledger
    assert report.ids[0] == OURS and "<0100018c-relay-written@email.amazonses.com>" in report.ids


def test_a_delay_or_a_success_is_no_bounce() -> None:
    delayed = parse(dsn("delayed", "4.4.7"))
    assert delayed.kind == "none" and "still trying" in delayed.why
    assert parse(dsn("delivered", "2.0.0")).kind == "none"


def test_an_abuse_report_names_the_recipient_and_the_message() -> None:
    report = parse(arf())
    assert report.kind == "complaint" and report.recipient == "ana@example.org"
    assert report.diagnostic == "abuse" and report.ids == (OURS,)


def test_an_abuse_report_with_the_recipient_redacted_still_names_the_message() -> None:
    report = parse(arf(recipient=""))
    assert report.kind == "complaint" and report.recipient == "" and report.ids == (OURS,)
    assert parse(arf(with_original=False)).ids == ()


def test_feedback_that_is_no_complaint_is_answered_as_such() -> None:
    report = parse(arf(feedback="not-spam"))
    assert report.kind == "none" and "not-spam" in report.why


def test_a_report_forwarded_as_an_attachment_is_found_inside() -> None:
    forwarded = (b"From: postmaster@acme.example\r\nSubject: Fwd: bounce\r\nMIME-Version: 1.0\r\n"
                 b'Content-Type: multipart/mixed; boundary="fwd"\r\n\r\n'
                 b"--fwd\r\nContent-Type: text/plain\r\n\r\n"
                 b"see attached\r\n--fwd\r\nContent-Type: message/rfc822\r\n\r\n" + dsn("failed", "5.7.1")
                 + b"\r\n--fwd--\r\n")
    report = parse(forwarded)
    assert report.kind == "bounce" and report.status == "5.7.1" and report.ids == (OURS,)


def test_anything_else_is_refused_saying_what_it_is() -> None:
    with pytest.raises(NotAReport, match="the message is text/plain"):
        parse(b"From: a@b.example\r\nSubject: hello\r\n\r\njust mail\r\n")
    assert not looks_like_report(b"From: a@b.example\r\nSubject: hello\r\n\r\njust mail\r\n")
    assert looks_like_report(dsn("failed", "5.1.1")) and looks_like_report(arf())


def test_a_report_without_headers_finds_the_newest_mail_to_its_address_once(tmp_path) -> None:
    """act() on a real ledger: a DSN that returns no headers falls back to the address (as the
    lead gave it, in any case), the newest e-mail sent to it; posted twice, it tells the lead once."""
    ledger = Database.open(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    try:
        for n, (key, content) in enumerate((("k-old", "welcome-guide"), ("k-new", "case-study"))):
            ledger.claim(key, kind="email", lead="lead-ana", target="Ana@Example.org", subject=content,
                         owner="test", lease=60, message_id=f"<{key}@acme.example>",
                         address="Ana@Example.org", now=1000.0 + n)
            ledger.mark(key, "sent", message_id=f"<{key}@acme.example>", now=1000.0 + n)
        told: list[tuple[str, dict]] = []

        async def tell(lead: str, event: dict) -> bool:
            told.append((lead, event))
            return True

        boundary = b"--RAA14128.773615765/mx.example.org"
        bare = dsn("failed", "5.1.1").split(boundary + b"\r\nContent-Type: text/rfc822")[0]
        bare += boundary + b"--\r\n"
        report = parse(bare)
        assert report.ids == () and report.recipient == "ana@example.org"
        first = asyncio.run(act(ledger, report, tell, now=2000.0))
        assert first.found and first.matched_by == "address" and first.delivery == "k-new"
        assert first.done == ["address suppressed (bounced)", "delivery marked bounced",
                              "email_bounce sent to the lead"]
        assert ledger.get("k-new")["status"] == "bounced" and ledger.get("k-old")["status"] == "sent"
        assert ledger.suppressed("ana@example.org") == "bounced"
        (lead, event), = told
        assert lead == "lead-ana" and event["type"] == "email_bounce" and event["data"]["hard"] is True
        assert event["data"]["status"] == "5.1.1" and event["data"]["content"] == "case-study"
        again = asyncio.run(act(ledger, report, tell, now=2001.0))
        assert "taken before" in again.why and len(told) == 1
    finally:
        ledger.close()


def test_a_report_whose_lead_could_not_be_told_is_taken_again_when_posted_again(tmp_path) -> None:
    ledger = Database.open(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    try:
        ledger.claim("k1", kind="email", lead="lead-ana", target="ana@example.org", subject="welcome-guide",
                     owner="test", lease=60, message_id=OURS, address="ana@example.org")
        ledger.mark("k1", "sent", message_id=OURS)
        told: list[dict] = []

        async def down(lead: str, event: dict) -> bool:
            raise ConnectionError("Temporal did not answer")

        async def up(lead: str, event: dict) -> bool:
            told.append(event)
            return True

        report = parse(arf(recipient=""))
        with pytest.raises(ConnectionError):
            asyncio.run(act(ledger, report, down))
        assert ledger.suppressed("ana@example.org") == "complaint"  # kept, whatever came after
        again = asyncio.run(act(ledger, report, up))
        assert again.matched_by == "message id" and again.done[-1] == "complaint sent to the lead"
        assert [e["id"] for e in told] == [f"complaint-{delivery_digest('k1')}"]
    finally:
        ledger.close()
