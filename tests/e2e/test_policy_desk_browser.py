"""The policy desk in a real browser, on the whole stack (a worker that takes the active version
from the shared database, the API and pages): a marketing owner and a sales owner each log in
with a key of their own and read the policy in words, with what each rule did. The marketing
owner proposes a stricter qualification from the text area (a slip first, refused beside its
line), reads what it would have done on the archive, and approves; the sales owner approves; the
activation says how many running leads move, and the next event shows the new version on a
lead's page. The log shows the change, and going back is proposed like any change."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.browser import CHROMIUM_FLAGS, chromium
from tests.support.stack import KEYS, Stack, until
from tests.support.temporal_harness import ROOT

MARKETING, SALES = "marketing-ops@example.com", "sales-ops@example.com"
PEOPLE_KEYS = {MARKETING: ("ops", "marketing-owner-key-0123456789"),
               SALES: ("sales", "sales-owner-key-0123456789ab")}
V1 = (ROOT / "policies" / "lead-lifecycle.v1.yaml").read_text()
QUALIFY = "      score.fit: {gte: 50}\n      score.intent: {gte: 25}"
STRICTER = "      score.fit: {gte: 70}\n      score.intent: {gte: 25}"
# fit 55 (budget-set, decision-maker, target-size): with a demo request, sales-ready under v1, not
# under fit >= 70
MID = {"email": "mia@midco.example", "role": "director", "budget": 20000, "company_size": 100,
       "consent": True}
# fit 85: sales-ready under both
HOT = {"email": "hal@bigco.example", "role": "vp", "budget": 60000, "timeline": "now", "company_size": 300,
       "consent": True}
COLD = {"email": "cole@small.example", "role": "manager", "consent": True}


def _send(stack: Stack, event: dict[str, Any]) -> None:
    answer = stack.http("admin").post("/v1/events?wait=true", json=event)
    assert answer.status_code == 200, answer.text


def _lead(stack: Stack, email: str) -> dict[str, Any]:
    answer = stack.http("ops").get(f"/v1/leads/{email}")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_two_owners_change_the_qualification_from_the_desk(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    executable = chromium()
    keys = [f"{role}:{key}" for role, key in KEYS.items()]
    keys += [f"{role}:{person}:{key}" for person, (role, key) in PEOPLE_KEYS.items()]
    home = tmp_path / "home"
    home.mkdir()
    with Stack(home, queue="desk", governed=True, api_keys=",".join(keys)) as stack:
        for lead in (MID, HOT, COLD):
            _send(stack, {"type": "signup", "lead": lead})
        for lead in (MID, HOT):
            _send(stack, {"type": "demo_request", "lead": {"email": lead["email"]}})
        assert until(lambda: _lead(stack, MID["email"])["state"] == "sales-ready", 30)
        assert until(lambda: _lead(stack, HOT["email"])["state"] == "sales-ready", 30)

        async def scenario() -> None:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
                marketing = await (await browser.new_context(base_url=stack.url)).new_page()
                sales = await (await browser.new_context(base_url=stack.url)).new_page()
                for page, person in ((marketing, MARKETING), (sales, SALES)):
                    await page.goto("/login?next=/policies")
                    await page.fill("input[name=key]", PEOPLE_KEYS[person][1])
                    await page.click("button[type=submit]")
                    await expect(page).to_have_url(re.compile(r"/policies/lead-lifecycle$"))
                    # the policy in words, grouped, each rule with its id and what it did
                    qualify = page.locator("tr[data-rule=qualify]")
                    await expect(qualify.locator(".sentence")).to_contain_text("sales-ready")
                    await expect(qualify.locator(".fired")).to_have_text("2")
                    await expect(qualify.locator(".leads a")).to_have_count(2)
                    # a track's sends count too (no rule fires for a step): each welcome
                    await expect(page.locator("tr[data-rule='nurture.awareness'] .fired")).to_have_text("3")
                    await expect(page.locator("section.words h3")).to_contain_text(["Fit"])
                    await expect(page.locator("p.sub")).to_contain_text("v1")

                # sales read the desk but do not propose
                await expect(sales.locator("form.proposal")).to_have_count(0)

                # a slip first: refused, the problem beside its line, the text kept
                slip = V1.replace("version: 1\n", "version: 2\n", 1).replace("{in_list: decision_roles}",
                                                                          "{in_list: decision_role}")
                await marketing.fill("textarea[name=text]", slip)
                await marketing.click("form.proposal button[type=submit]")
                bad = marketing.locator("table.lines tr.bad")
                await expect(bad).to_have_count(1)
                line = next(n for n, text in enumerate(slip.splitlines(), 1) if "decision_role}" in text)
                await expect(bad.locator("td.n")).to_have_text(str(line))
                await expect(bad.locator("td.problem")).to_contain_text("decision_role")
                await expect(marketing.locator("textarea[name=text]")).to_have_value(slip)

                stricter = V1.replace("version: 1\n", "version: 2\n", 1).replace(QUALIFY, STRICTER, 1)
                stricter += "\nrollout:\n  running_leads: move\n"
                await marketing.fill("textarea[name=text]", stricter)
                await marketing.click("form.proposal button[type=submit]")
                await expect(marketing).to_have_url(re.compile(r"/policies/lead-lifecycle/v2$"))
                # its own tests ran; its diff on the archive says who changes and why
                await expect(marketing.locator(".tests li.fail")).to_have_count(0)
                await expect(marketing.locator(".tests li.pass").first).to_be_visible()
                await expect(marketing.locator("b.changed")).to_have_text("1")
                await expect(marketing.locator("table.moves")).to_contain_text("sales-ready -> nurturing")
                await expect(marketing.locator("table.partings")).to_contain_text(MID["email"])
                await expect(marketing.locator("pre.diff .add")).to_contain_text(["score.fit: {gte: 70}"])
                report = httpx.get(f"{stack.url}/policies/lead-lifecycle/v2/report",
                                   cookies=dict(_cookies(await marketing.context.cookies())))
                assert report.status_code == 200 and "data:image/png;base64" in report.text

                await marketing.click("form.approve button")
                await expect(marketing.locator("p.mine")).to_contain_text(MARKETING)
                await expect(marketing.locator("form.approve")).to_have_count(0)  # never twice
                await expect(marketing.locator("form.activate")).to_have_count(0)  # sales still to approve

                await sales.goto("/policies/lead-lifecycle")
                await sales.click("a[href='/policies/lead-lifecycle/v2']")
                await expect(sales.locator("b.changed")).to_have_text("1")
                await sales.click("form.approve button")
                await expect(sales.locator("p.so-far")).to_contain_text("enough to activate")
                await expect(sales.locator("form.activate")).to_have_count(0)  # sales approve; ops activate

                await marketing.reload()
                consequence = marketing.locator("p.consequence")
                await expect(consequence).to_contain_text("of the 3 leads running in the archive")
                await expect(consequence).to_contain_text("1 sales-ready -> nurturing")
                await marketing.click("form.activate button")  # the box is not ticked: the browser holds it
                await expect(marketing.locator("h1 .badge")).to_have_text("proposed")
                await marketing.check("input[name=confirm]")
                await marketing.click("form.activate button")
                await expect(marketing.locator("h1 .badge")).to_have_text("runs")

                await marketing.goto("/policies/lead-lifecycle/log")
                await expect(marketing.locator("#v2 pre.diff .add")).to_contain_text(["score.fit: {gte: 70}"])
                await expect(marketing.locator("table.log")).to_contain_text(SALES)

                # going back is a proposal of its own, approved like any change
                await marketing.goto("/policies/lead-lifecycle/v1")
                await marketing.click("form.rollback button")
                await expect(marketing).to_have_url(re.compile(r"/policies/lead-lifecycle/v3$"))
                await expect(marketing.locator("p.so-far")).to_contain_text("no approval yet")
                await expect(marketing.locator("pre.diff .del")).to_contain_text(["score.fit: {gte: 70}"])

                # the next event: the lead runs on v2, and its page says so
                _send(stack, {"type": "page_view", "lead": {"email": COLD["email"]},
                              "data": {"path": "/blog/x"}})
                deadline = time.monotonic() + 30
                while _lead(stack, COLD["email"])["version"] != 2 and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                await marketing.goto(f"/leads/{COLD['email']}")
                await expect(marketing.locator("p.sub").first).to_contain_text("lead-lifecycle v2")
                await browser.close()

        asyncio.run(scenario())


def _cookies(cookies: list[Any]) -> list[tuple[str, str]]:
    return [(c["name"], c["value"]) for c in cookies]


PERSON = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 "
          "Safari/537.36")
LEADS = 400


def test_an_ab_test_splits_its_leads_and_the_desk_counts_what_the_database_holds(tmp_path: Path) -> None:
    """400 generated leads on a version with an A/B welcome: each gets the variant its id picks
    (the split within 5 points of 50/50), people's opens and clicks and demo requests come back
    (a mail proxy's fetches too), and every figure the desk shows equals a count made here from
    the database's rows."""
    from playwright.async_api import async_playwright, expect
    from sqlalchemy import select

    from leadflow.db.database import Database
    from leadflow.db.schema import deliveries, events, transitions
    from leadflow.delivery.links import delivery_digest
    from rules.validate import load_policy_bytes
    from rules.variants import ab_steps
    from tests.support.policy import AB_WELCOME, ab_policy_text
    from tests.support.wire import SmtpCatcher

    executable = chromium()
    keys = [f"{role}:{key}" for role, key in KEYS.items()]
    keys += [f"{role}:{person}:{key}" for person, (role, key) in PEOPLE_KEYS.items()]
    text = ab_policy_text().replace("version: 1\n", "version: 2\n", 1)
    (ab,) = ab_steps(load_policy_bytes(text.encode(), "ab.yaml").policy)
    home = tmp_path / "home"
    home.mkdir()
    settings = {"api_keys": ",".join(keys), "smtp_host": "127.0.0.1", "delivery_processes": 0}
    with SmtpCatcher() as smtp, Stack(home, queue="desk-ab", governed=True, smtp_port=smtp.port,
                                      **settings) as stack:
        owner = {person: httpx.Client(base_url=stack.url, timeout=60,
                                      headers={"Authorization": f"Bearer {key}"})
                 for person, (_, key) in PEOPLE_KEYS.items()}
        proposed = owner[MARKETING].post("/v1/policies/proposals", content=text,
                                         headers={"Content-Type": "application/yaml"})
        assert proposed.status_code == 201, proposed.text
        for person in (MARKETING, SALES):
            assert owner[person].post("/v1/policies/lead-lifecycle/2/approvals", json={}).status_code == 200
        assert owner[MARKETING].post("/v1/policies/lead-lifecycle/2/activation", json={}).status_code == 200
        time.sleep(1.5)  # the worker looks at the registry every half second

        people = [{"email": f"ab{i:03d}@ab.example", "role": "director", "budget": 20000, "company_size": 100,
                   "consent": True} for i in range(LEADS)]
        sent = stack.http("intake").post("/v1/events", json=[{"type": "signup", "lead": p} for p in people])
        assert sent.status_code == 200 and {r["status"] for r in sent.json()["results"]} == {"accepted"}
        lead_of = {p["email"]: r["lead_id"] for p, r in zip(people, sent.json()["results"], strict=True)}
        ledger = Database.of(stack.settings)
        try:
            def welcomes() -> list[Any]:
                with ledger.engine.connect() as db:
                    return list(db.execute(select(deliveries).where(deliveries.c.subject.in_(AB_WELCOME),
                                                                    deliveries.c.status == "sent")))
            assert until(lambda: len(welcomes()) == LEADS, 180), len(welcomes())
            rows = welcomes()
            # each lead the variant its id picks, the split within 5 points of the ratio
            assert all(ab.choose(row.lead) == row.subject for row in rows)
            share = sum(row.subject == AB_WELCOME[0] for row in rows) / LEADS
            assert abs(share - 0.5) <= 0.05, share
            assert {row.lead for row in rows} == set(lead_of.values())

            # what came back: people open and click (past the seconds a proxy or scanner takes),
            # a mail proxy opens too, some ask for a demo
            mails = {m["To"]: m for m in smtp.messages}
            time.sleep(10)
            with httpx.Client(timeout=30) as web:
                for i, person in enumerate(people):
                    html = next(p.get_content() for p in mails[person["email"]].walk()
                                if p.get_content_type() == "text/html")
                    pixel = re.search(r'src="([^"]+/t/open/[^"]+)"', html)
                    link = re.search(r'href="([^"]+/t/click/[^"]+)"', html)
                    assert pixel and link
                    # each person from an address of their own (documentation ranges), as the
                    # bound per client address and minute expects of real traffic
                    person_at = {"User-Agent": PERSON, "X-Forwarded-For": f"198.51.{i // 250}.{i % 250 + 1}"}
                    proxy = {"User-Agent": "YahooMailProxy; https://help.yahoo.com",
                             "X-Forwarded-For": f"203.0.{i // 250}.{i % 250 + 1}"}
                    if i % 3 == 0:
                        assert web.get(pixel[1], headers=person_at).status_code == 200
                    if i % 4 == 0:
                        assert web.get(pixel[1], headers=proxy).status_code == 200
                    if i % 5 == 0:
                        web.get(link[1], headers=person_at, follow_redirects=False)
            demo = [{"type": "demo_request", "lead": {"email": p["email"]}} for i, p in enumerate(people)
                    if i % 7 == 0]
            assert stack.http("intake").post("/v1/events", json=demo).status_code == 200
            assert until(lambda: _fetches(ledger, events, "email_click") >= len(range(0, LEADS, 5)), 60)
            assert until(lambda: _moves(ledger, transitions) >= len(demo), 60)
            time.sleep(1)

            # the figures, counted here from the rows
            expected = _counted(ledger, deliveries, events, transitions, delivery_digest)
        finally:
            ledger.close()

        async def scenario() -> None:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
                page = await (await browser.new_context(base_url=stack.url)).new_page()
                await page.goto("/login?next=/policies")
                await page.fill("input[name=key]", PEOPLE_KEYS[MARKETING][1])
                await page.click("button[type=submit]")
                table = page.locator("table.ab[data-test='awareness[0]']")
                await expect(table).to_be_visible()
                for variant in AB_WELCOME:
                    row = table.locator(f"tr[data-variant='{variant}']")
                    figures = expected[variant]
                    await expect(row.locator(".assigned")).to_have_text(str(figures["assigned"]))
                    await expect(row.locator(".sent")).to_have_text(str(figures["sent"]))
                    for measure in ("opened", "clicked", "sales_ready"):
                        await expect(row.locator(f".{measure}")).to_have_attribute(
                            "data-count", str(figures[measure]))
                        await expect(row.locator(f".{measure}")).to_contain_text(
                            f"{figures[measure]} of {figures['sent']}")
                await expect(page.locator("p.verdict .said")).to_have_text(
                    re.compile(r"^(no winner yet|welcome-(guide|checklist) better with 95% confidence)$"))
                # a winner goes to everyone by a proposal like any other
                await page.select_option("form.promote select[name=variant]", AB_WELCOME[1])
                await page.click("form.promote button")
                area = await page.locator("textarea[name=text]").input_value()
                assert "\nversion: 3\n" in area and "{after: 0d, send: welcome-checklist}" in area
                assert "variants:" not in area
                await browser.close()

        asyncio.run(scenario())


def _fetches(ledger: Any, events: Any, kind: str) -> int:
    from sqlalchemy import func, select

    with ledger.engine.connect() as db:
        return int(db.execute(select(func.count()).where(events.c.type == kind)).scalar_one())


def _moves(ledger: Any, transitions: Any) -> int:
    from sqlalchemy import func, select

    with ledger.engine.connect() as db:
        ready = transitions.c.to_state == "sales-ready"
        return int(db.execute(select(func.count()).where(ready)).scalar_one())


def _counted(ledger: Any, deliveries: Any, events: Any, transitions: Any, digest: Any
             ) -> dict[str, dict[str, int]]:
    """Per variant, in distinct leads: assigned, sent, people's opens and clicks of that e-mail,
    moves to sales-ready after it went out."""
    import json

    from sqlalchemy import select

    with ledger.engine.connect() as db:
        rows = list(db.execute(select(deliveries).where(deliveries.c.key.like("%|track:awareness@%|step:0"))))
        fetched = [(row.lead, row.type, json.loads(row.body).get("data", {}))
                   for row in db.execute(select(events).where(events.c.type.in_(["email_open",
                                                                                 "email_click"])))]
        moved = list(db.execute(select(transitions.c.lead, transitions.c.at)
                                .where(transitions.c.to_state == "sales-ready")))
    out: dict[str, dict[str, int]] = {}
    for variant in {row.subject for row in rows}:
        mine = [row for row in rows if row.subject == variant]
        sent = {row.lead: row for row in mine if row.status == "sent"}
        digests = {digest(row.key) for row in sent.values()}

        def did(kind: str, digests: set[str] = digests) -> int:
            return len({lead for lead, type_, data in fetched if type_ == kind and not data.get("machine")
                        and data.get("delivery") in digests})

        out[variant] = {"assigned": len({row.lead for row in mine}), "sent": len(sent),
                        "opened": did("email_open"), "clicked": did("email_click"),
                        "sales_ready": len({lead for lead, at in moved
                                            if lead in sent and at >= (sent[lead].sent_at or 0)})}
    return out
