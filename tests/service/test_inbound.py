"""Returned mail end to end (leadflow.delivery.inbound): a lead's welcome mail goes out over
SMTP, a delivery status notification for it comes back to POST /v1/mail/inbound, and an abuse
report for another lead's; each lands on the right lead and in the ledger, the complainer's next
mail is withheld, the local sink of `make up` takes a report by SMTP the same way, and
`leadflow deliverability --json` counts what came back. On the time-skipping server."""

from __future__ import annotations

import asyncio
import base64
import json
import smtplib
from datetime import timedelta

import dkim  # type: ignore[import-untyped]
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from leadflow.cli.main import main as cli
from leadflow.db.schema import mail_reports
from leadflow.delivery.inbound import for_sink
from leadflow.delivery.sink import start_sink
from tests.service.test_delivery import _until  # a lead's state, once it holds
from tests.support.temporal_harness import ROOT, api, free_port, harness
from tests.support.wire import SmtpCatcher

SENDER = "Acme <news@acme.example>"
OPS, INTAKE = "ops-key-0123456789abcdefghijklmnop", "intake-key-0123456789abcdefghijklm"
RFC822 = {"Content-Type": "message/rfc822"}


def dsn(recipient: str, status: str, original: str) -> bytes:
    """RFC 3464's shape: what the receiving MTA says, the status fields, the returned headers."""
    return (
        "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.org>\r\n"
        "To: news@acme.example\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} mailbox unavailable\r\n\r\n"
        f"--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n{original}\r\n"
        "--b1--\r\n").encode()


def arf(original: str) -> bytes:
    """RFC 5965's shape, the recipient redacted as mailbox providers send it."""
    return (
        "From: <fbl@example.net>\r\nTo: <abuse@acme.example>\r\nSubject: FW: complaint\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="b2"\r\n\r\n'
        "--b2\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n"
        "--b2\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: FBL/1.0\r\nVersion: 1\r\n\r\n"
        f"--b2\r\nContent-Type: message/rfc822\r\n\r\n{original}\r\nredacted\r\n"
        "--b2--\r\n").encode()


def headers_of(msg) -> str:
    return "".join(f"{k}: {msg[k]}\r\n" for k in ("From", "Subject", "Message-ID", "X-Leadflow-Id"))


def test_bounces_and_complaints_come_back_to_their_leads(tmp_path, monkeypatch, capsys):
    # the default policy with one rule more: a reply gets the case study, outside any track
    policies = tmp_path / "policies"
    policies.mkdir()
    text = (ROOT / "policies" / "lead-lifecycle.v1.yaml").read_text()
    (policies / "lead-lifecycle.v1.yaml").write_text(text.replace(
        "  - id: hard-bounce\n",
        "  - {id: answer-reply, when: {event.type: reply}, then: {send: case-study}}\n"
        "  - id: hard-bounce\n", 1))

    async def scenario():
        with SmtpCatcher() as smtp:
            settings = {"http": f"127.0.0.1:{free_port()}", "smtp_host": "127.0.0.1", "smtp_port": smtp.port,
                        "mail_from": SENDER, "api_keys": f"ops:{OPS},intake:{INTAKE}"}
            async with harness(tmp_path, policy_dir=policies, **settings) as h, api(h) as base, \
                    httpx.AsyncClient(base_url=base, timeout=30) as web:
                gone = await h.signup("gone@example.org", role="manager")
                angry = await h.signup("angry@example.org", role="manager")
                (to_gone,) = await smtp.wait_for("gone@example.org")
                (to_angry,) = await smtp.wait_for("angry@example.org")
                bounce = dsn("gone@example.org", "5.1.1", headers_of(to_gone))
                ops = {**RFC822, "Authorization": f"Bearer {OPS}"}

                refused = await web.post("/v1/mail/inbound", content=bounce,
                                         headers={**RFC822, "Authorization": f"Bearer {INTAKE}"})
                assert refused.status_code == 403
                assert (await web.post("/v1/mail/inbound", content=bounce, headers=RFC822)).status_code == 401

                taken = await web.post("/v1/mail/inbound", content=bounce, headers=ops)
                assert taken.status_code == 200, taken.text
                said = taken.json()
                assert said["report"] == "bounce" and said["bounce"] == "hard" and said["status"] == "5.1.1"
                assert said["found"] and said["lead"] == gone.id and said["content"] == "welcome-guide"
                assert said["done"] == ["address suppressed (bounced)", "delivery marked bounced",
                                        "email_bounce sent to the lead"]
                st = await _until(h, gone, lambda s: s["state"] == "derailed", "the bounce derails")
                assert any(s["event_type"] == "email_bounce" for s in st["story"])
                (row,) = await h.delivered(gone.id, "email")
                assert row["status"] == "bounced" and "5.1.1" in row["detail"]
                assert h.delivery.ledger.suppressed("gone@example.org") == "bounced"
                again = (await web.post("/v1/mail/inbound", content=bounce, headers=ops)).json()
                assert again["done"] == ["address suppressed (bounced)"] and "taken before" in again["why"]

                complaint = await web.post("/v1/mail/inbound", content=arf(headers_of(to_angry)), headers=ops)
                assert complaint.status_code == 200, complaint.text
                said = complaint.json()
                assert said["report"] == "complaint" and said["lead"] == angry.id
                assert said["done"] == ["address suppressed (complaint)",
                                        "complaint recorded for the delivery", "complaint sent to the lead"]
                assert h.delivery.ledger.suppressed("angry@example.org") == "complaint"
                st = await _until(h, angry, lambda s: any(e["type"] == "complaint" for e in s["recent"]),
                                  "the lead takes the complaint")
                assert st["rejected"] == 0  # a type every policy knows (rules.models.BUILTIN_EVENTS)
                assert st["track"] is None  # the complaint stopped it
                # the policy's next marketing mail is withheld, and recorded so
                await angry.signal("event", {"id": "r1", "type": "reply",
                                             "lead": {"email": "angry@example.org"}})
                later = await h.delivered(angry.id, "email", until=lambda rows: len(rows) >= 2)
                assert [(r["subject"], r["status"]) for r in later] == [("welcome-guide", "sent"),
                                                                        ("case-study", "suppressed")]
                assert "complained" in later[1]["detail"]
                # and the address itself is refused by the ledger, whatever any lead asks
                refused_claim = h.delivery.ledger.claim(
                    "another-lead|x", kind="email", lead="another-lead", target="angry@example.org",
                    subject="whats-new", owner="test", lease=60, address="ANGRY@example.org")
                assert (refused_claim.outcome, refused_claim.status) == ("final", "suppressed")
                assert "complaint" in refused_claim.detail
                await h.env.sleep(timedelta(days=8))  # the track's steps: none of them goes out
                assert len(smtp.to("angry@example.org")) == 1

                plain = await web.post("/v1/mail/inbound", content=b"From: a@b.example\r\n\r\nhello\r\n",
                                       headers=ops)
                assert plain.status_code == 422 and "neither a delivery status notification" in plain.text
                wrong = await web.post("/v1/mail/inbound", content=bounce, headers={
                    "Authorization": f"Bearer {OPS}", "Content-Type": "application/json"})
                assert wrong.status_code == 415

                # the local sink: a soft bounce for the complainer's first mail, sent by SMTP
                sink = start_sink(tmp_path / "mail", inbound=for_sink(h.client, h.settings))
                try:
                    soft = dsn("angry@example.org", "4.2.2", headers_of(to_angry))
                    await asyncio.to_thread(_send, sink.port, soft)
                    for _ in range(200):
                        with h.delivery.ledger.engine.connect() as db:
                            kinds = set(db.execute(select(mail_reports.c.kind)).scalars())
                        if "soft" in kinds:
                            break
                        await asyncio.sleep(0.05)
                    assert kinds == {"hard", "soft", "complaint"}
                    assert len(list((tmp_path / "mail").glob("*.eml"))) == 1  # kept as any mail is
                finally:
                    sink.stop()
        return gone.id, angry.id

    gone, angry = asyncio.run(scenario())
    monkeypatch.setenv("LEADFLOW_HOME", str(tmp_path))
    capsys.readouterr()
    assert cli(["deliverability", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    welcome = next(r for r in rows if r["content"] == "welcome-guide")
    assert welcome["sent"] == 2 and welcome["bounced_hard"] == 1 and welcome["bounced_soft"] == 1
    assert welcome["complaints"] == 1 and welcome["complaint_rate"] == 0.5 and welcome["bounce_rate"] == 1.0
    # the day's row for all content comes first; the case study was withheld, so not counted
    assert rows[0]["content"] == "ALL" and {k: rows[0][k] for k in ("sent", "complaints")} == {
        "sent": 2, "complaints": 1}


def _send(port: int, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as conn:
        conn.sendmail("MAILER-DAEMON@mx.example.org", ["news@acme.example"], raw)


def test_mail_from_the_delivery_processes_is_dkim_signed(tmp_path):
    """The worker's delivery processes sign (the harness runs them, as a worker does): the bytes
    the SMTP server received verify against the key's DNS record."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "dkim.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"mail2026._domainkey.acme.example." else None

    async def scenario():
        sink = start_sink(tmp_path / "caught")  # keeps the bytes as they came
        try:
            async with harness(tmp_path, smtp_host="127.0.0.1", smtp_port=sink.port, mail_from=SENDER,
                               dkim_selector="mail2026", dkim_domain="acme.example", dkim_key=str(pem)) as h:
                assert h.delivery.pool is not None and h.delivery.pool.dkim is not None
                lead = await h.signup("signed@example.org", role="manager")
                (row,) = await h.delivered(lead.id, "email")
                assert row["status"] == "sent"
        finally:
            sink.stop()
        (raw,) = [p.read_bytes() for p in (tmp_path / "caught").glob("*.eml")]
        assert raw.startswith(b"DKIM-Signature:") and b"s=mail2026" in raw
        assert dkim.verify(raw, dnsfunc=dns)
        assert not dkim.verify(raw.replace(b"Subject: ", b"Subject: Re: ", 1), dnsfunc=dns)

    asyncio.run(scenario())
