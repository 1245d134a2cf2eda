"""Forms from outside, on the whole stack (Temporal, a worker, the API) with an SMTP server on
loopback: the hosted page, a plain HTML POST from an allowed site as a browser sends it, what
the lead then holds, bad input given back beside its field, bots answered as people and leaving
nothing, and double opt-in's mail and link holding back the policy's marketing e-mail until
followed."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from datetime import datetime
from html import unescape
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select

from leadflow.db.database import Database
from leadflow.db.schema import events
from tests.support.stack import Stack, until
from tests.support.temporal_harness import ROOT
from tests.support.wire import SmtpCatcher

SITE = "https://shop.example"
OPT_IN = """
title: Newsletter
fields:
  - {name: email, type: email, required: true}
  - {name: name, type: text}
  - {name: consent, type: checkbox}
consent: {text: Send me the monthly newsletter., version: news-3}
double_opt_in: true
thanks: {message: Almost there.}
"""


@pytest.fixture(scope="module")
def smtp():
    with SmtpCatcher() as catcher:
        yield catcher


@pytest.fixture(scope="module")
def stack(tmp_path_factory, shared_server, smtp):
    home = tmp_path_factory.mktemp("forms")
    forms = home / "forms"
    forms.mkdir()
    shutil.copy(ROOT / "forms" / "signup.yaml", forms)
    (forms / "news.yaml").write_text(OPT_IN)
    with Stack(home, server=shared_server, sites=(SITE,), forms_setting=forms, smtp_host="127.0.0.1",
               smtp_port=smtp.port, mail_from="Acme <hello@acme.example>", delivery_processes=0) as s:
        yield s


def _lead(stack: Stack, email: str, check=lambda lead: True) -> dict | None:
    def read():
        answer = stack.http("admin").get(f"/v1/leads/{email}")
        return answer.json() if answer.status_code == 200 and check(answer.json()) else None
    return until(read, 20)


def _post(stack: Stack, form: str, fields: dict, *, origin: str | None = SITE, files=None) -> httpx.Response:
    headers = {"Origin": origin} if origin else {}
    with httpx.Client(base_url=stack.url, timeout=30, follow_redirects=False) as web:
        if files is not None:  # multipart, as a form with enctype="multipart/form-data" sends it
            return web.post(f"/f/{form}", data=fields, files=files, headers=headers)
        return web.post(f"/f/{form}", data=fields, headers=headers)


def _filled(email: str, **more: str) -> dict:
    """The shipped sign-up form as a person fills it on a page of the site, the tracking script's
    hidden fields included (loaded ten seconds ago)."""
    return {"email": email, "name": "Ana Lopez", "company": "Acme Corp", "role": "vp",
            "company_size": "250", "timeline": "this-quarter", "consent": "on",
            "lf_visitor": "v-0123456789abcdefXYZ", "lf_started": str(int((time.time() - 10) * 1000)),
            "lf_page": f"{SITE}/pricing?utm_source=newsletter&utm_campaign=spring", **more}


def test_the_hosted_page_and_a_post_from_a_site_make_a_scored_lead_with_its_consent(stack, smtp):
    page = httpx.get(f"{stack.url}/f/signup", timeout=30)
    assert page.status_code == 200, page.text
    html = page.text
    assert "<script" not in html.split("</form>")[0].split("<form")[1]  # the form needs no script
    for name in ("email", "name", "company", "role", "company_size", "timeline", "consent"):
        assert re.search(rf'<label for="f-{name}">', html), name  # every field has its label
    assert 'I agree that Acme may send me product news' in html  # the consent text beside its box
    started = int(re.search(r'name="lf_started" value="(\d+)"', html).group(1))
    assert abs(started / 1000 - time.time()) < 60
    assert f'name="lf_page" value="{stack.settings.public}/f/signup"' in html
    assert 'name="homepage"' in html and 'tabindex="-1"' in html  # the honeypot, out of the tab order

    answer = _post(stack, "signup", _filled("ana@acme.example"))
    assert answer.status_code == 200 and "The getting-started guide is on its way" in answer.text
    assert answer.headers["access-control-allow-origin"] == SITE
    lead = _lead(stack, "ana@acme.example", lambda lead: lead["state"] == "nurturing")
    assert lead is not None, "the lead never nurtured"
    profile = lead["profile"]
    assert {k: profile[k] for k in ("email", "name", "company", "role", "company_size", "timeline")} == {
        "email": "ana@acme.example", "name": "Ana Lopez", "company": "Acme Corp", "role": "vp",
        "company_size": 250, "timeline": "this-quarter"}
    # scored as the same lead sent through the API: decision maker, near timeline, target size
    assert lead["scores"]["fit"] == 55
    assert profile["consent"] is True and profile["consent_version"] == "2025-01"
    assert profile["consent_form"] == "signup"
    assert profile["consent_page"] == f"{SITE}/pricing?utm_source=newsletter&utm_campaign=spring"
    assert abs(time.time() - _epoch(profile["consent_at"])) < 120
    assert "consent_confirmed_at" not in profile
    (welcome,) = asyncio.run(smtp.wait_for("ana@acme.example"))  # single opt-in: marketing mail goes
    assert welcome["X-Leadflow-Content"] == "welcome-guide"
    signup = _archived(stack, lead["lead_id"], "signup")
    assert signup["data"]["visitor_id"] == "v-0123456789abcdefXYZ"
    assert signup["data"]["consent"] == {
        "form": "signup", "version": "2025-01", "text": unescape(re.search(
            r'<label for="f-consent">([^<]+)</label>', html).group(1)),
        "at": profile["consent_at"], "page": profile["consent_page"], "double_opt_in": False,
        "confirmed": False}

    # the same person again, multipart this time and from leadflow's own hosted page: the lead
    # that exists takes a form_submit, its profile updated
    again = _filled("ana@acme.example", timeline="now", lf_page=f"{stack.settings.public}/f/signup")
    answer = _post(stack, "signup", again, origin=stack.settings.public, files={"ignored": ("a.txt", b"x")})
    assert answer.status_code == 200, answer.text
    lead = _lead(stack, "ana@acme.example", lambda lead: lead["profile"]["timeline"] == "now")
    assert lead is not None and lead["runs"] == 1
    assert _archived(stack, lead["lead_id"], "form_submit")["data"]["form"] == "signup"


def test_bad_input_comes_back_with_the_error_beside_its_field_and_nothing_typed_lost(stack):
    typed = _filled("ben(at)acme", name="", company="Bold & <b>Brave</b>", company_size="lots",
                    role="emperor")
    del typed["consent"]
    answer = _post(stack, "signup", typed)
    assert answer.status_code == 422
    html = answer.text
    for name, said in (("email", "does not look like an e-mail address"), ("name", "Please fill this in"),
                       ("company_size", "Please give a number"), ("role", "choose one of the options"),
                       ("consent", "we need your consent")):
        field = re.search(rf'<div class="lf-field[^"]*">(?:(?!</div>).)*name="{name}"(?:(?!</div>).)*</div>',
                          html, re.S)
        assert field is not None and said in field.group(0), (name, field and field.group(0))
        assert 'aria-invalid=true' in field.group(0) and f'aria-describedby="e-{name}' in field.group(0)
    assert 'value="ben(at)acme"' in html and 'value="Bold &amp; &lt;b&gt;Brave&lt;/b&gt;"' in html
    assert 'value="lots"' in html and 'value="this-quarter" selected' in html
    assert 'name="lf_visitor" value="v-0123456789abcdefXYZ"' in html  # the page it came from, kept too
    # a field over its length: beside the field, kept; a body over any form's size: 413
    long = _post(stack, "signup", _filled("cy@acme.example", company="x" * 500))
    assert long.status_code == 422 and "At most 200 characters" in long.text and "x" * 500 in long.text
    huge = _post(stack, "signup", _filled("cy@acme.example", company="x" * 1_100_000))
    assert huge.status_code == 413 and "too large" in huge.text
    assert stack.http("admin").get("/v1/leads/cy@acme.example").status_code == 404
    # the person ticks the box they forgot and sends again at once, with what the page gave back:
    # no bot's speed, the fill time was behind them
    forgot = _filled("dee@acme.example")
    del forgot["consent"]
    again = _post(stack, "signup", forgot)
    assert again.status_code == 422
    started = re.search(r'name="lf_started" value="(\d+)"', again.text).group(1)
    fixed = _post(stack, "signup", {**forgot, "consent": "on", "lf_started": started})
    assert fixed.status_code == 200 and _lead(stack, "dee@acme.example") is not None
    # a site's page in Latin-1 posts its form in Latin-1: the name as it was typed
    latin = urlencode({**_filled("jo@acme.example"), "name": "José"}, encoding="latin-1").encode()
    with httpx.Client(base_url=stack.url, timeout=30) as web:
        posted = web.post("/f/signup", content=latin, headers={
            "Origin": SITE, "Content-Type": "application/x-www-form-urlencoded"})
    assert posted.status_code == 200
    assert _lead(stack, "jo@acme.example", lambda lead: lead["profile"]["name"] == "José") is not None


def test_bots_are_answered_as_people_are_and_leave_no_lead(stack):
    person = _post(stack, "news", {"email": "dee@acme.example", "consent": "on"})
    honeypot = _post(stack, "news", {"email": "bot1@acme.example", "consent": "on", "homepage": "http://x"})
    fast = _post(stack, "news", {"email": "bot2@acme.example", "consent": "on",
                                 "lf_started": str(int(time.time() * 1000) - 500)})
    assert person.status_code == honeypot.status_code == fast.status_code == 200
    assert person.text == honeypot.text == fast.text
    assert _lead(stack, "dee@acme.example") is not None
    assert stack.http("admin").get("/v1/leads/bot1@acme.example").status_code == 404
    assert stack.http("admin").get("/v1/leads/bot2@acme.example").status_code == 404
    # a page of a site not allowed is refused before the form; a form that is not there: 404
    foreign = _post(stack, "signup", _filled("eve@acme.example"), origin="https://evil.example")
    assert foreign.status_code == 403
    assert httpx.get(f"{stack.url}/f/nothing-here", timeout=30).status_code == 404
    assert _post(stack, "nothing-here", _filled("eve@acme.example")).status_code == 404
    assert stack.http("admin").get("/v1/leads/eve@acme.example").status_code == 404


def test_double_opt_in_holds_marketing_mail_until_the_link_is_followed(stack, smtp):
    email = "fay@acme.example"
    answer = _post(stack, "news", {"email": email, "name": "Fay", "consent": "on"})
    assert answer.status_code == 200 and "confirm your address" in answer.text
    (mail,) = asyncio.run(smtp.wait_for(email))
    assert mail["X-Leadflow-Content"] == "form-confirmation/news"
    link = re.search(r"(http://\S+/f/news/confirm\?t=\S+)", mail.get_body(("plain",)).get_content()).group(1)
    lead = _lead(stack, email, lambda lead: lead["state"] == "nurturing")
    assert lead["profile"]["consent"] is False and lead["profile"]["consent_version"] == "news-3"
    ledger = Database.of(stack.settings)
    try:
        rows = until(lambda: [r for r in ledger.list(lead=lead["lead_id"]) if r["subject"] == "welcome-guide"
                              and r["status"] not in ("sending", "retrying")])
        assert rows[0]["status"] == "suppressed" and "unconfirmed" in rows[0]["detail"]
        assert ledger.suppressed(email) == "unconfirmed"
        (confirmation,) = [r for r in ledger.list(lead=lead["lead_id"]) if r["subject"].startswith("form-")]
        assert confirmation["status"] == "sent"
        assert len(smtp.to(email)) == 1  # the confirmation alone
        # a changed link is refused and confirms nothing
        assert httpx.get(link[:-4] + "AAAA", timeout=30).status_code == 400
        assert ledger.suppressed(email) == "unconfirmed"
        for _ in range(2):  # followed twice: confirmed once, fine both times
            followed = httpx.get(link, timeout=30)
            assert followed.status_code == 200 and "confirmed" in followed.text
        assert ledger.suppressed(email) is None
    finally:
        ledger.close()
    lead = _lead(stack, email, lambda lead: lead["profile"].get("consent") is True)
    assert lead is not None and lead["profile"]["consent_confirmed_at"]
    assert lead["events"] == 2  # the sign-up and one confirmation, however often the link was followed
    # interest enough for the consideration track: its first e-mail now reaches the address
    for kind in ("webinar_attended", "content_download"):
        sent = stack.http("intake").post("/v1/events", json={"type": kind, "lead": {"email": email}})
        assert sent.status_code in (200, 202), sent.text
    later = asyncio.run(smtp.wait_for(email, count=2))
    assert later[-1]["X-Leadflow-Content"] == "customer-story"


def _archived(stack: Stack, lead: str, kind: str) -> dict:
    """The lead's event of `kind` as the event archive keeps it."""
    ledger = Database.of(stack.settings)
    try:
        def read():
            with ledger.engine.connect() as db:
                return db.execute(select(events.c.body).where(events.c.lead == lead,
                                                              events.c.type == kind)).all()
        rows = until(read, 20)
        assert rows, f"no {kind} archived for {lead}"
        return json.loads(rows[-1].body)
    finally:
        ledger.close()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
