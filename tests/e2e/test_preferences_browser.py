"""The preference centre in a real browser: a lead's unsubscribe link opens a page where the
person keeps or drops each topic of marketing e-mail. Pia drops guides and keeps the rest; as
weeks of nurture pass on the time-skipping server, the guides are held back (the story says
why) and the webinar invitation, an events e-mail, still goes out."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.support.browser import CHROMIUM_FLAGS, chromium
from tests.support.temporal_harness import api, free_port, harness
from tests.support.wire import SmtpCatcher


def test_a_person_drops_one_topic_and_only_its_mail_stops(tmp_path):
    from playwright.async_api import async_playwright, expect

    executable = chromium()

    async def scenario() -> None:
        with SmtpCatcher() as smtp:
            settings = {"http": f"127.0.0.1:{free_port()}", "smtp_host": "127.0.0.1", "smtp_port": smtp.port}
            async with harness(tmp_path, **settings) as h, api(h):
                lead = await h.signup("pia@acme.example", first_name="Pia", role="manager")
                (welcome,) = await smtp.wait_for("pia@acme.example")
                assert welcome["Subject"].startswith("Welcome")  # a guides e-mail, before any choice
                preferences = welcome["List-Unsubscribe"].strip("<>")
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
                    page = await browser.new_page()
                    await page.goto(preferences)
                    topics = page.locator("fieldset.topics")
                    for name in ("Events", "Guides", "News"):
                        await expect(topics).to_contain_text(name)
                    await page.uncheck("input[name=keep][value=guides]")
                    await page.click("button[name=save]")
                    await expect(page.locator("p.saved")).to_be_visible()
                    await expect(page.locator("input[name=keep][value=guides]")).not_to_be_checked()
                    await expect(page.locator("input[name=keep][value=events]")).to_be_checked()
                    await browser.close()
                # two weeks of nurture: case-study (3 days) and roi-calculator (7) are guides,
                # webinar-invite (14) is events
                await h.env.sleep(timedelta(days=15))
                rows = await h.delivered(lead.id, "email", until=lambda rows: any(
                    r["subject"] == "webinar-invite" for r in rows))
                status = {r["subject"]: (r["status"], r["detail"]) for r in rows}
                assert status["case-study"][0] == "suppressed" and "guides" in status["case-study"][1]
                assert status["roi-calculator"][0] == "suppressed"
                assert status["webinar-invite"][0] == "sent"
                mails = await smtp.wait_for("pia@acme.example", count=2)
                subjects = [m["Subject"].split(":")[0] for m in mails]
                assert subjects == ["Welcome to Acme, Pia", "Live next week"], subjects
                state = await h.state(lead)
                said = [s["why"] for s in state["story"]]
                assert any("case-study not sent" in why and "guides" in why for why in said), said

    asyncio.run(scenario())
