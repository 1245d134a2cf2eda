"""Delivery end to end against real servers on loopback, no mocks of the wire: nurture e-mail
to an SMTP server (aiosmtpd) read back header by header, its links followed over HTTP against
the API, hand-offs to an HTTP receiver that checks each signature and counts Idempotency-Keys,
and the CRM answering back. On the time-skipping server, so weeks of nurture pass in seconds."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import timedelta

import httpx

from leadflow.crm_auth import sign
from leadflow.delivery.links import Links, Mail
from leadflow.delivery.message import message_id
from leadflow.delivery.webhook import verify
from tests.support.temporal_harness import ROOT, api, free_port, harness
from tests.support.wire import Receiver, SmtpCatcher
from workflows.types import LeadOptions

SECRET = "crm-shared-secret-0123456789abcdef"  # signs the hand-offs leadflow sends
CRM_SECRET = "crm-answers-secret-0123456789abcdef"  # signs the CRM's answers
SENDER = "Acme <news@acme.example>"
HOT = {"role": "vp", "budget": 60000, "timeline": "now", "company_size": 300}
PERSON_MAIL_CLIENT = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
                      "(KHTML, like Gecko)")
PERSON_BROWSER = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/131.0.0.0 Safari/537.36")


def run(coro):
    return asyncio.run(coro)


def _settings(smtp: SmtpCatcher, receiver: Receiver | None = None) -> dict:
    extra = {"http": f"127.0.0.1:{free_port()}", "smtp_host": "127.0.0.1", "smtp_port": smtp.port,
             "mail_from": SENDER, "webhook_secret": SECRET, "crm_secret": CRM_SECRET,
             # a fetch within a second of sending is a machine's; the tests wait that out for a person
             "machine_open_seconds": 1.0, "machine_click_seconds": 1.0}
    if receiver is not None:
        extra["handoff_webhook_urls"] = {"account-executives": f"{receiver.url}/ae",
                                         "sales-managers": f"{receiver.url}/managers"}
    return extra


async def _until(h, lead, check, what: str, seconds: float = 20):
    deadline = time.monotonic() + seconds
    while True:
        st = await h.state(lead)
        if check(st):
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: never; the lead is {st['state']}, story {st['story'][-3:]}")
        await asyncio.sleep(0.05)


def _parts(msg):
    return msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()


def test_nurture_mail_carries_its_links_and_an_unsubscribe_stops_every_track(tmp_path):
    async def scenario():
        with SmtpCatcher() as smtp:
            async with harness(tmp_path, **_settings(smtp)) as h, api(h) as base:
                nina = await h.signup("nina@acme.example", first_name="Nina", role="manager")
                carl = await h.signup("carl@acme.example", first_name="Carl", role="manager")
                (welcome,) = await smtp.wait_for("nina@acme.example")
                (row,) = await h.delivered(nina.id, "email")
                assert row["status"] == "sent" and row["subject"] == "welcome-guide"
                # a Message-ID from the delivery key: a repeat of this delivery has the same one
                assert welcome["Message-ID"] == row["message_id"] == message_id(row["key"], SENDER)
                assert welcome["From"] == SENDER and welcome["Subject"] == "Welcome to Acme, Nina"
                unsubscribe = welcome["List-Unsubscribe"].strip("<>")
                assert unsubscribe.startswith(f"{base}/u/")
                assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
                text, html = _parts(welcome)
                assert "Hi Nina," in text and unsubscribe in text and unsubscribe in html
                # the lead's links are signed redirects, the open pixel too; no lead id in sight
                assert f"{base}/t/click/" in text and f'href="{base}/t/click/' in html
                assert re.search(rf'<img src="{re.escape(base)}/t/open/[^"]+"', html)
                assert nina.id not in text + html
                token = unsubscribe.rsplit("/", 1)[1]
                pixel = re.search(r'src="([^"]+/t/open/[^"]+)"', html).group(1)
                async with httpx.AsyncClient(timeout=30) as web:
                    tampered = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
                    foreign = Links("someone else's secret", base).unsubscribe(
                        Mail(lead=nina.id, delivery="0" * 16, content="welcome-guide", sent=int(time.time())))
                    for bad in (f"{base}/u/{tampered}", f"{base}/u/{pixel.rsplit('/', 1)[1]}", foreign):
                        answer = await web.post(bad, data={"List-Unsubscribe": "One-Click"})
                        assert answer.status_code == 400, bad
                        assert (await web.get(bad)).status_code == 400
                    assert h.delivery.ledger.suppressed("nina@acme.example") is None
                    assert (await h.state(nina))["state"] == "nurturing"
                    # RFC 8058: the mail client POSTs List-Unsubscribe=One-Click, no page, no login
                    answer = await web.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
                    assert answer.status_code == 200
                    # a person opens the link instead: a page, then a confirmation
                    (carl_welcome,) = await smtp.wait_for("carl@acme.example")
                    carl_link = carl_welcome["List-Unsubscribe"].strip("<>")
                    page = await web.get(carl_link)
                    assert page.status_code == 200 and "<form" in page.text and "Unsubscribe" in page.text
                st = await _until(h, nina, lambda s: s["state"] == "derailed", "nina derails")
                assert st["facts"]["unsubscribed"] is True and st["track"] is None
                assert h.delivery.ledger.suppressed("nina@acme.example") == "unsubscribed"
                # six weeks on: the track's next steps (case study on day 3 ...) never reach her
                await h.env.sleep(timedelta(days=42))
                more = await smtp.wait_for("carl@acme.example", count=4)
                assert {m["X-Leadflow-Content"] for m in more} >= {"welcome-guide", "case-study",
                                                                    "roi-calculator"}
                assert len(smtp.to("nina@acme.example")) == 1
                later = [r for r in h.delivery.ledger.list(lead=nina.id) if r["subject"] != "welcome-guide"]
                assert all(r["status"] == "suppressed" for r in later)
                # Carl confirms on the page: the same, and his mail stops too
                async with httpx.AsyncClient(timeout=30) as web:
                    done = await web.post(carl_link, data={"confirm": "yes"})
                    assert done.status_code == 200 and "unsubscribed" in done.text
                await _until(h, carl, lambda s: s["state"] == "derailed", "carl derails")
                sent_to_carl = len(smtp.to("carl@acme.example"))
                await h.env.sleep(timedelta(days=60))
                await asyncio.sleep(0.5)
                assert len(smtp.to("carl@acme.example")) == sent_to_carl
    run(scenario())


def test_opens_and_clicks_a_person_made_score_and_a_machines_do_not(tmp_path):
    async def scenario():
        with SmtpCatcher() as smtp:
            async with harness(tmp_path, **_settings(smtp)) as h, api(h):
                olga = await h.signup("olga@acme.example", first_name="Olga", role="manager")
                (welcome,) = await smtp.wait_for("olga@acme.example")
                _, html = _parts(welcome)
                pixel = re.search(r'src="([^"]+/t/open/[^"]+)"', html).group(1)
                link = re.search(r'href="([^"]+/t/click/[^"]+)"', html).group(1)
                before = await h.state(olga)
                seen = before["events"]
                async with httpx.AsyncClient(timeout=30) as web:
                    # Apple Mail Privacy Protection fetches every image on delivery, from Apple's network
                    proxy = await web.get(pixel, headers={"User-Agent": "Mozilla/5.0",
                                                          "X-Forwarded-For": "17.58.63.12"})
                    assert proxy.status_code == 200 and proxy.headers["content-type"] == "image/gif"
                    # a security gateway follows every link within seconds of delivery
                    scan = await web.get(link, headers={"User-Agent": PERSON_BROWSER,
                                                        "X-Forwarded-For": "40.107.22.5"})
                    assert scan.status_code == 302
                    assert scan.headers["location"] == "https://acme.example/guides/getting-started"
                    st = await _until(h, olga, lambda s: s["events"] >= seen + 2, "the machines' events")
                    assert st["scores"]["interest"] == before["scores"]["interest"]
                    await asyncio.sleep(1.1)  # past the seconds in which only machines fetch
                    person = await web.get(pixel, headers={"User-Agent": PERSON_MAIL_CLIENT})
                    assert person.status_code == 200
                    st = await _until(h, olga, lambda s: s["events"] >= seen + 3, "the person's open")
                    assert st["scores"]["interest"] == before["scores"]["interest"] + 1
                    clicked = await web.get(link, headers={"User-Agent": PERSON_BROWSER})
                    assert clicked.status_code == 302
                    st = await _until(h, olga, lambda s: s["events"] >= seen + 4, "the person's click")
                    assert st["scores"]["interest"] == before["scores"]["interest"] + 1 + 3
                    # a changed link sends nobody anywhere
                    bad = await web.get(link[:-4] + "xxxx")
                    assert bad.status_code == 400 and "location" not in bad.headers
    run(scenario())


def test_a_hard_bounce_suppresses_the_address_and_consent_is_asked_when_the_policy_says(tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    text = (ROOT / "policies" / "lead-lifecycle.v1.yaml").read_text()
    (policies / "lead-lifecycle.v1.yaml").write_text(
        text.replace("nurture:\n  tracks:\n", "nurture:\n  requires_consent: consent\n  tracks:\n", 1))

    async def scenario():
        with SmtpCatcher() as smtp:
            async with harness(tmp_path, policy_dir=policies, **_settings(smtp)) as h:
                gone = await h.signup("bounce-7@acme.example", role="manager", consent=True)
                silent = await h.signup("silent@acme.example", role="manager")
                await h.signup("yes@acme.example", role="manager", consent=True)
                await smtp.wait_for("yes@acme.example")
                (bounced,) = await h.delivered(gone.id, "email")
                assert bounced["status"] == "bounced" and "550" in bounced["detail"]
                assert h.delivery.ledger.suppressed("bounce-7@acme.example") == "bounced"
                st = await _until(h, gone, lambda s: s["state"] == "derailed", "the bounce derails")
                assert any(s["event_type"] == "email_bounce" for s in st["story"])
                (withheld,) = await h.delivered(silent.id, "email")
                assert withheld["status"] == "suppressed" and "consent" in withheld["detail"]
                await h.env.sleep(timedelta(days=10))
                await smtp.wait_for("yes@acme.example", count=3)
                assert smtp.to("silent@acme.example") == [] and smtp.to("bounce-7@acme.example") == []
                # consent given later: the next step goes out
                await silent.signal("event", {"id": "consent", "type": "form_submit",
                                              "lead": {"email": "silent@acme.example", "consent": True}})
                await h.env.sleep(timedelta(days=8))
                await smtp.wait_for("silent@acme.example")
    run(scenario())


def test_hand_offs_reach_the_crm_signed_once_and_the_crm_answers(tmp_path):
    def first_try_fails(request, before: int) -> int:
        return 503 if before == 0 else 200

    def refuse_some(request, before: int) -> int:
        return 422 if b"refused@acme.example" in request.body else first_try_fails(request, before)

    async def scenario():
        with SmtpCatcher() as smtp, Receiver(answers={"/ae": refuse_some}) as crm:
            async with harness(tmp_path, **_settings(smtp, crm)) as h, api(h) as base:
                async def hot(email: str):
                    lead = await h.signup(email, options=LeadOptions(index=False, delivery_timeout=10), **HOT)
                    await lead.execute_update("submit", {"id": "demo", "type": "demo_request"})
                    return lead, (await h.state(lead))["open_handoff"]

                ana, ana_task = await hot("ana@acme.example")
                got = await crm.wait_for(lambda rs: any(r.status == 200 for r in rs))
                first, second = [r for r in got if r.headers["Idempotency-Key"] == ana_task]
                assert (first.status, second.status) == (503, 200)  # Temporal retried the 503
                assert first.body == second.body  # the same message, signed again
                for r in (first, second):
                    verify(SECRET, r.headers["X-Leadflow-Signature"], r.body)
                body = json.loads(second.body)
                assert body["event"] == "handoff.created" and body["task"]["id"] == ana_task
                assert body["task"]["queue"] == "account-executives" and body["task"]["due_at"]
                assert body["task"]["rep"]["rep"] == "ana"  # the CRM hears who has it (the roster's first)
                lead = body["lead"]
                assert lead["email"] == "ana@acme.example" and lead["profile"]["role"] == "vp"
                assert lead["bant"] and lead["scores"]["fit"] >= 50 and "qualify" in lead["fired"]
                assert any(s["rule"] == "qualify" for s in lead["story"])
                assert body["callbacks"]["accept"] == f"{base}/v1/crm/tasks/{ana_task}/accept"
                (row,) = await h.delivered(ana.id, "handoff")
                assert row["status"] == "sent" and row["attempts"] == 2

                # the CRM answers, signed; wrong, stale and replayed signatures are refused
                async with httpx.AsyncClient(base_url=base, timeout=30) as web:
                    async def answer(path: str, payload: dict, secret: str = CRM_SECRET,
                                     at: int | None = None, header: str | None = None):
                        raw = json.dumps(payload).encode()
                        sig = header or sign(secret, "POST", path, raw, at or int(time.time()))
                        return await web.post(path, content=raw, headers={
                            "Content-Type": "application/json", "X-Leadflow-Signature": sig}), sig

                    accept = f"/v1/crm/tasks/{ana_task}/accept"
                    assert (await web.post(accept, json={"by": "crm"})).status_code == 401
                    assert (await answer(accept, {"by": "crm"}, secret="guess"))[0].status_code == 401
                    stale, _ = await answer(accept, {"by": "crm"}, at=int(time.time()) - 301)
                    assert stale.status_code == 401 and "ago" in stale.text
                    ok, used = await answer(accept, {"by": "crm-bot"})
                    assert ok.status_code == 200 and ok.json()["status"] == "accepted"
                    replay, _ = await answer(accept, {"by": "crm-bot"}, header=used)
                    assert replay.status_code == 401
                    await _until(h, ana, lambda s: s["state"] == "converted", "ana converts")

                    # an SLA breach escalates to the managers' hook; the CRM rejects with a reason
                    ben, ben_task = await hot("ben@acme.example")
                    await crm.wait_for(lambda rs: any(
                        r.headers["Idempotency-Key"] == ben_task and r.status == 200 for r in rs))
                    await h.env.sleep(timedelta(hours=49))
                    got = await crm.wait_for(lambda rs: any(r.path == "/managers" for r in rs))
                    (esc,) = [r for r in got if r.path == "/managers"]
                    verify(SECRET, esc.headers["X-Leadflow-Signature"], esc.body)
                    assert esc.headers["Idempotency-Key"] == f"{ben_task}:breach:1"
                    assert json.loads(esc.body)["escalation"] == {
                        "breach": 1, "step": "escalate:sales-managers", "from_queue": "account-executives",
                        "queue": "sales-managers", "from_rep": "ben", "rep": "dev"}  # the roster's manager
                    reject = f"/v1/crm/tasks/{ben_task}/reject"
                    rejected, _ = await answer(reject, {"reason": "", "by": "crm"})
                    assert rejected.status_code == 422  # a rejection needs its reason
                    rejected, _ = await answer(reject, {"reason": "budget frozen until Q3", "by": "crm"})
                    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
                    st = await _until(h, ben, lambda s: s["state"] == "nurturing", "ben is nurtured again")
                    assert "budget frozen until Q3" in st["story"][-1]["why"]
                    missing, _ = await answer("/v1/crm/tasks/handoff-nobody-1/accept", {})
                    assert missing.status_code == 404

                # a CRM that refuses (4xx) is told once, and the refusal is in the task and the story
                cleo, cleo_task = await hot("refused@acme.example")
                await crm.wait_for(lambda rs: any(r.headers["Idempotency-Key"] == cleo_task for r in rs))
                (row,) = await h.delivered(cleo.id, "handoff")
                assert row["status"] == "failed" and "422" in row["detail"]
                st = await _until(h, cleo, lambda s: any("did not take" in e["why"] for e in s["story"]),
                                  "the refusal in the story")
                task = await h.client.get_workflow_handle(cleo_task).query("task")
                (failed,) = [e for e in task["log"] if e["what"] == "crm_failed"]
                assert failed["http_status"] == 422
                await asyncio.sleep(1.5)
                assert len([r for r in crm.requests if r.headers["Idempotency-Key"] == cleo_task]) == 1
                # every key the CRM accepted, it accepted once
                keys = [r.headers["Idempotency-Key"] for r in crm.taken()]
                assert len(keys) == len(set(keys)) == 3, keys
    run(scenario())
