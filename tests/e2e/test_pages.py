"""The sales inbox in a real browser: Debian's chromium, driven by Playwright through its
executable path (the setup installs chromium where it is missing). Screenshots of each page are
kept under artifacts/screenshots/."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.browser import CHROMIUM_FLAGS, chromium
from tests.support.stack import KEYS, Stack
from tests.support.temporal_harness import ROOT

SHOTS = ROOT / "artifacts" / "screenshots"
HOT = {"role": "vp", "budget": 60000, "timeline": "now", "company_size": 300}
def test_a_sales_user_works_the_inbox_in_a_browser(tmp_path, shared_server):
    from playwright.sync_api import expect, sync_playwright

    executable = chromium()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with Stack(tmp_path, queue="pages", server=shared_server) as stack:
        intake = stack.http("admin")  # ?wait=true answers with the lead: a key that may read it
        for who, name in (("hot", "Hana Hot"), ("later", "Lou Later")):
            lead = {"email": f"{who}@pages.example"}
            signup = {"type": "signup", "lead": {**lead, "name": name, **HOT}}
            intake.post("/v1/events?wait=true", json=signup)
            intake.post("/v1/events?wait=true", json={"type": "demo_request", "lead": lead})
        sales = stack.http("sales")
        tasks = {who: sales.get(f"/v1/leads/{who}@pages.example").json()["open_handoff"]
                 for who in ("hot", "later")}
        assert all(tasks.values())

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def shot(name: str) -> None:
                page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

            page.goto(f"{stack.url}/inbox")
            expect(page).to_have_url(f"{stack.url}/login?next=/inbox")
            page.fill("#key", "not a key at all")
            page.click("button[type=submit]")
            expect(page.get_by_role("alert")).to_have_text("That key is not known here.")
            shot("1-login-refused")
            page.fill("#key", KEYS["sales"])
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{stack.url}/inbox")
            expect(page.locator("table.tasks")).to_contain_text("Hana Hot")
            # the time left on its SLA (48 h: from the listing's due time) and how long it is open
            sla = page.locator("table.tasks td.sla").first
            expect(sla).to_have_text(re.compile(r"^(1d 23h|2d 0h) left$"))
            expect(page.locator("table.tasks")).to_contain_text(re.compile(r"\b\d+m\b"))
            shot("2-inbox")

            page.click("text=Hana Hot")
            expect(page).to_have_url(f"{stack.url}/tasks/{tasks['hot']}")
            expect(page.locator("p.sub")).to_contain_text(re.compile(r"4[78]h \d\dm left"))  # the 48h SLA
            expect(page.locator("section.why")).to_contain_text("fit and buying intent agree")
            expect(page.locator("ol.timeline")).to_contain_text("rule qualify of lead-lifecycle v1")
            shot("3-task")
            page.click("button.reject")  # no reason given
            expect(page.get_by_role("alert")).to_contain_text("a rejection needs a reason")
            shot("4-reject-without-reason")

            page.goto(f"{stack.url}/tasks/{tasks['later']}")
            page.fill("#reason", "no budget until Q3")
            page.fill("#reject-by", "sam")
            page.click("button.reject")
            expect(page.locator("p.answered")).to_contain_text("rejected by sam: no budget until Q3")
            page.click(f"a[href='/leads/{stack.run(_lead_id('later@pages.example'))}']")
            expect(page.locator("h1 .badge")).to_have_text("nurturing")
            expect(page.locator("ol.timeline li").first).to_contain_text("no budget until Q3")
            expect(page.locator("svg.chart polyline")).to_have_count(3)
            shot("5-lead-back-in-nurture")

            page.goto(f"{stack.url}/tasks/{tasks['hot']}")
            page.fill("#accept-by", "sam")
            page.click("button.accept")
            expect(page.locator("p.answered")).to_contain_text("accepted by sam")
            page.goto(f"{stack.url}/leads/{stack.run(_lead_id('hot@pages.example'))}")
            expect(page.locator("h1 .badge")).to_have_text("converted", timeout=20_000)
            shot("6-lead-converted")

            page.goto(f"{stack.url}/leads?state=converted")
            expect(page.locator("table")).to_contain_text(stack.run(_lead_id("hot@pages.example")))
            shot("7-leads-converted")
            browser.close()
    assert len(list(SHOTS.glob("*.png"))) >= 7


async def _lead_id(email: str) -> str:
    from leadflow.operations.leads import lead_id

    return lead_id(email)


def test_pages_refuse_a_form_without_its_csrf_token(tmp_path, shared_server):
    with Stack(tmp_path, queue="csrf", server=shared_server) as stack:
        browserless = stack.http()
        login = browserless.get("/login")
        assert login.status_code == 200 and 'name="csrf"' in login.text
        forged = browserless.post("/login", data={"key": KEYS["sales"], "csrf": "forged"})
        assert forged.status_code == 403
        token = login.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        ok = browserless.post("/login", data={"key": KEYS["sales"], "csrf": token}, follow_redirects=False)
        assert ok.status_code == 303 and ok.headers["location"] == "/inbox"
        assert KEYS["sales"] not in ok.headers.get("set-cookie", "")
        # the roster page's form: refused without its token; with it, the API sees the change
        roster = browserless.get("/roster")
        assert roster.status_code == 200 and 'action="/roster/ana"' in roster.text
        assert browserless.post("/roster/ana", data={"capacity": "5", "csrf": "forged"}).status_code == 403
        form_token = roster.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        changed = browserless.post("/roster/ana", data={"capacity": "5", "away_until": "2030-01-01",
                                                        "csrf": form_token}, follow_redirects=False)
        assert changed.status_code == 303
        ana = next(r for r in stack.http("sales").get("/v1/roster").json()["reps"] if r["id"] == "ana")
        assert (ana["capacity"], ana["away"]) == (5, {"from": None, "until": "2030-01-01T00:00:00Z"})
        fresh = browserless.get("/login").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        assert fresh != token  # a new session on login, a new token
        intake = browserless.post("/login", data={"key": KEYS["intake"], "csrf": fresh})
        assert intake.status_code == 403 and "no pages" in intake.text
        assert Path(stack.settings.home / "session-secret").exists()
