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
