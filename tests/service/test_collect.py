"""The tracking script's doors: /c.js and /v1/collect from the pages of LEADFLOW_SITES only,
bounded, quiet under Global Privacy Control; a visitor's anonymous page views join its lead
when a sign-up names the visitor, before the sign-up at their own times, the first touch's UTM
becoming the lead's source. (The browser's side: tests/e2e/test_tracking_browser.py.)"""

from __future__ import annotations

import asyncio
import gzip
import time

import httpx
from sqlalchemy import func, select

from leadflow.archive.events import EventArchive
from leadflow.db.database import Database
from leadflow.db.schema import visitors, visits
from leadflow.delivery.links import Mail
from leadflow.signing import links_of
from leadflow.tracking.visitors import Visitors
from rules.identity import lead_key
from rules.models import LeadRef
from tests.support.stack import KEYS, Stack

SITE = "http://shop.example:8080"
VISITOR = "v-aaaaaaaaaaaaaaaaaaaa"


def stored(ledger: Database, table=visits) -> int:
    with ledger.engine.connect() as db:
        return int(db.execute(select(func.count()).select_from(table)).scalar_one())


def test_page_views_wait_for_their_visitor_then_join_the_lead_before_its_signup(tmp_path, shared_server):
    with Stack(tmp_path, queue="collect", server=shared_server, sites=(SITE,)) as stack:
        stack.run(_scenario(stack))


async def _scenario(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as web:
        ledger = Database.of(stack.settings)
        script = await web.get("/c.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert len(gzip.compress(script.content)) < 5 * 1024

        def view(path: str, at: float, visitor: str = VISITOR, **more: object) -> dict:
            return {"visitor": visitor, "type": "page_view", "url": f"{SITE}{path}", "title": path,
                    "referrer": "https://www.google.com/", "at": int(at * 1000), **more}

        now = time.time()
        # from elsewhere, or with no origin at all: refused, nothing kept
        for headers in ({"Origin": "http://evil.example"}, {}):
            refused = await web.post("/v1/collect", json=view("/", now), headers=headers)
            assert refused.status_code == 403
        preflight = await web.options("/v1/collect", headers={
            "Origin": SITE, "Access-Control-Request-Method": "POST"})
        assert preflight.headers["access-control-allow-origin"] == SITE
        assert stored(ledger) == 0
        ours = {"Origin": SITE, "Content-Type": "text/plain"}
        pages = ["/?utm_source=Newsletter&utm_medium=email&utm_campaign=spring", "/pricing", "/blog/roi"]
        for i, path in enumerate(pages):
            sent = await web.post("/v1/collect", json=view(path, now - 300 + 60 * i), headers=ours)
            assert sent.status_code == 204 and sent.headers["access-control-allow-origin"] == SITE
        # Global Privacy Control: nothing of an anonymous visitor is kept
        quiet = await web.post("/v1/collect", json=view("/", now, visitor="g-bbbbbbbbbbbbbbbbbbbb"),
                               headers={**ours, "Sec-GPC": "1"})
        assert quiet.status_code == 204
        assert stored(ledger) == 3 and stored(ledger, visitors) == 1
        # a bad body: said, nothing kept
        bad = await web.post("/v1/collect", content=b'{"visitor": "short"}', headers=ours)
        assert bad.status_code == 422
        big = await web.post("/v1/collect", json=view("/" + "x" * 5000, now), headers=ours)
        assert big.status_code == 413

        email = "reader@acme.example"
        signup = {"type": "signup", "lead": {"email": email, "role": "vp"},
                  "data": {"visitor_id": VISITOR}}
        intake = {"Authorization": f"Bearer {KEYS['intake']}"}
        answer = await web.post("/v1/events", json=signup, headers=intake)
        assert answer.status_code == 200, answer.text
        lead = lead_key(LeadRef(email=email))
        archive = EventArchive(ledger)
        for _ in range(200):
            taken = list(archive.export(lead=lead))
            if len(taken) >= 4:
                break
            await asyncio.sleep(0.1)
        in_time = sorted(taken, key=lambda e: e["at"])
        assert [e["type"] for e in in_time] == ["page_view"] * 3 + ["signup"]
        assert [e["data"]["path"] for e in in_time[:3]] == ["/", "/pricing", "/blog/roi"]
        assert in_time[0]["data"]["utm_source"] == "Newsletter"
        assert stack.client is not None
        state = await stack.client.get_workflow_handle(lead).query("state")
        profile = state["profile"]
        assert (profile["source"], profile["source_medium"], profile["source_campaign"]) == \
            ("newsletter", "email", "spring")
        assert stored(ledger) == 0  # handed over, kept no more as anonymous
        # the visitor is known now: its next view goes to the lead
        await web.post("/v1/collect", json=view("/pricing/enterprise", time.time()), headers=ours)
        for _ in range(200):
            if any(e["data"].get("path") == "/pricing/enterprise" for e in archive.export(lead=lead)):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the known visitor's page view did not reach its lead")
        # the same person on another browser, brought back by a nurture e-mail's link: the link to
        # the site carries its token, and the script there names the visitor with it
        other = "w-eeeeeeeeeeeeeeeeeeee"
        await web.post("/v1/collect", json=view("/careers", time.time() - 5, visitor=other), headers=ours)
        mail = Mail(lead=lead, delivery="d1", content="welcome-guide", sent=int(time.time()))
        token = links_of(stack.settings).click(mail, f"{SITE}/pricing?ref=mail").rsplit("/", 1)[1]
        went = await web.get(f"/t/click/{token}", follow_redirects=False)
        assert went.status_code == 302
        assert went.headers["location"] == f"{SITE}/pricing?ref=mail&lf_click={token}"
        named = await web.post("/v1/collect", json={"visitor": other, "type": "identify", "click": token},
                               headers=ours)
        assert named.status_code == 204
        for _ in range(200):
            if any(e["data"].get("path") == "/careers" for e in archive.export(lead=lead)):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the page view before the click did not reach the lead")
        # a later form from that other browser is no first touch: the lead's source stays
        assert stack.client is not None
        again = {"type": "form_submit", "lead": {"email": email},
                 "data": {"visitor_id": other, "form": "signup", "page": f"{SITE}/x?utm_source=elsewhere"}}
        assert (await web.post("/v1/events", json=again, headers=intake)).status_code == 200
        # a lead that came with no source takes it from the first view of the visitor identify()
        # names
        quiet = {"type": "signup", "lead": {"email": "quiet@acme.example"}}
        assert (await web.post("/v1/events", json=quiet, headers=intake)).status_code == 200
        fourth = "y-gggggggggggggggggggg"
        await web.post("/v1/collect", json=view("/?utm_source=Partner", time.time() - 9, visitor=fourth),
                       headers=ours)
        quiet_lead = stack.client.get_workflow_handle(lead_key(LeadRef(email="quiet@acme.example")))
        for _ in range(100):
            if (await quiet_lead.query("state"))["events"] >= 1:
                break
            await asyncio.sleep(0.1)
        said = {"visitor": fourth, "type": "identify", "email": "quiet@acme.example"}
        assert (await web.post("/v1/collect", json=said, headers=ours)).status_code == 204
        for _ in range(100):
            if (await quiet_lead.query("state"))["profile"].get("source") == "partner":
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("identify() gave the lead no source")
        for _ in range(100):  # the form_submit taken, its source left out
            if any(e["type"] == "form_submit" for e in archive.export(lead=lead)):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the second browser's form did not reach the lead")
        state = await stack.client.get_workflow_handle(lead).query("state")
        assert state["profile"]["source"] == "newsletter"
        # identify() by an address that is no lead names nobody: the views stay anonymous
        third = "x-ffffffffffffffffffff"
        await web.post("/v1/collect", json=view("/", time.time(), visitor=third), headers=ours)
        nobody = {"visitor": third, "type": "identify", "email": "nobody@else.example"}
        await web.post("/v1/collect", json=nobody, headers=ours)
        assert stored(ledger) == 1
        ledger.close()


def test_an_anonymous_visitor_is_capped_and_forgotten_after_the_retention(tmp_path):
    ledger = Database.open(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    store = Visitors(ledger, most=5)
    kept = [store.view("v-cccccccccccccccccccc", 1000.0 + i, {"path": f"/{i}"}, 1000.0 + i) for i in range(7)]
    assert kept == [True] * 5 + [False] * 2
    store.view("v-dddddddddddddddddddd", 5000.0, {"path": "/"}, 5000.0)
    assert store.sweep(before=2000.0) == 5  # the first visitor's views go; the recent one stays
    assert stored(ledger) == 1 and stored(ledger, visitors) == 1
    ledger.close()
