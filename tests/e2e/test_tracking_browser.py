"""The tracking script and an embedded form in a real browser: a customer's site on an origin of
its own (another port) embeds /c.js and the sign-up form; a visitor arrives from a newsletter
(UTM), reads three pages and signs up. The lead's page then shows the three views before the
sign-up, the source from the UTM parameters and the consent. A page from an origin not in
LEADFLOW_SITES gets nothing stored."""

from __future__ import annotations

import html
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from sqlalchemy import func, select

from leadflow.db.database import Database
from leadflow.db.schema import visitors, visits
from rules.identity import lead_key
from rules.models import LeadRef
from tests.support.browser import CHROMIUM_FLAGS, chromium
from tests.support.stack import KEYS, Stack, until
from tests.support.temporal_harness import free_port

EMAIL = "vera.visitor@acme.example"


def page(leadflow: str, title: str, body: str = "") -> bytes:
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<script src="{leadflow}/c.js" async></script></head><body><h1>{html.escape(title)}</h1>'
            f'<a id="next" href="/pricing">Pricing</a>{body}</body></html>').encode()


def form(leadflow: str) -> str:
    """The customer's own form, posting to leadflow: plain HTML, no script of its own."""
    return f'''<form method="post" action="{leadflow}/f/signup">
      <input name="email" type="email"> <input name="name"> <input name="company">
      <select name="role"><option value="vp">VP</option><option value="manager">Manager</option></select>
      <input name="company_size" type="number">
      <select name="timeline"><option value="this-quarter">This quarter</option></select>
      <label><input type="checkbox" name="consent" value="yes"> I agree</label>
      <input name="homepage" style="display:none" tabindex="-1" autocomplete="off">
      <button id="send" type="submit">Sign up</button></form>'''


class Site:
    """A customer's site on a port of its own: a landing page, pricing and a sign-up page with
    leadflow's form, each embedding the script of the leadflow at `leadflow` (set once it runs)."""

    def __init__(self) -> None:
        self.leadflow = ""
        pages = {"/": ("Acme, the landing page", ""), "/pricing": ("Pricing", ""),
                 "/signup": ("Sign up", "form")}
        owner = self

        class Pages(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                found = pages.get(urlsplit(self.path).path)
                body = page(owner.leadflow, found[0], form(owner.leadflow) if found[1] else "") if found \
                    else b"not here"
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Pages)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Site:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


def count(ledger: Database, table=visits) -> int:
    with ledger.engine.connect() as db:
        return int(db.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_visitor_browses_a_site_with_the_script_and_signs_up_with_its_form(tmp_path, shared_server):
    from playwright.sync_api import expect, sync_playwright

    executable = chromium()
    with Site() as shop, Site() as stranger, \
            Stack(tmp_path, queue="tracking", server=shared_server, sites=(shop.origin,)) as stack, \
            sync_playwright() as pw:
        shop.leadflow = stranger.leadflow = stack.url
        ledger = Database.of(stack.settings)
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        visitor = browser.new_context().new_page()

        # an origin not in LEADFLOW_SITES: the script runs, its views are refused, nothing is kept
        visitor.goto(f"{stranger.origin}/")
        visitor.wait_for_function("window.leadflow !== undefined")
        time.sleep(1)
        assert count(ledger) == 0 and count(ledger, visitors) == 0

        # from a newsletter, three pages of the customer's own site
        visitor.goto(f"{shop.origin}/?utm_source=Newsletter&utm_medium=email&utm_campaign=launch")
        until(lambda: count(ledger) == 1, 15)
        visitor.click("#next")
        until(lambda: count(ledger) == 2, 15)
        visitor.goto(f"{shop.origin}/signup")
        until(lambda: count(ledger) == 3, 15)
        assert count(ledger, visitors) == 1
        # the script marked the form with the visitor and the page
        assert visitor.locator("form input[name=lf_visitor]").input_value() == \
            visitor.evaluate("window.leadflow.visitor")
        visitor.fill("input[name=email]", EMAIL)
        visitor.fill("input[name=name]", "Vera Visitor")
        visitor.fill("input[name=company]", "Acme")
        visitor.select_option("select[name=role]", "vp")
        visitor.fill("input[name=company_size]", "250")
        visitor.check("input[name=consent]")
        time.sleep(3.2)  # a person takes a moment: faster than the form's minimum is a bot's
        visitor.click("#send")
        expect(visitor.locator("body")).to_contain_text("Thank you")

        lead = lead_key(LeadRef(email=EMAIL))
        until(lambda: count(ledger) == 0, 15)  # the views went to the lead
        ops = browser.new_context().new_page()
        ops.goto(f"{stack.url}/login?next=/leads/{lead}")
        ops.fill("#key", KEYS["ops"])
        ops.click("button[type=submit]")
        expect(ops).to_have_url(f"{stack.url}/leads/{lead}")
        rows = ops.locator("ol.activity li")
        for _ in range(60):  # the worker archives the lead's events as it takes them
            if rows.count() >= 4:
                break
            time.sleep(0.5)
            ops.reload()
        kinds = [rows.nth(i).locator(".event").inner_text() for i in range(rows.count())]
        # newest first: the sign-up, then the three views before it, in the order they were seen
        # (the thank-you page, on leadflow's own origin, may come after the sign-up)
        signup = kinds.index("signup")
        assert kinds[signup + 1:] == ["page_view"] * 3, [r.inner_text() for r in rows.all()]
        said = [rows.nth(i).locator(".said").inner_text() for i in range(signup + 1, signup + 4)]
        assert said[0].startswith("/signup") and said[1].startswith("/pricing") and said[2].startswith("/ ")
        assert "campaign launch" in said[2]
        assert "source newsletter" in rows.nth(signup).inner_text()
        profile = ops.locator("section.card").first
        expect(profile).to_contain_text("newsletter")
        expect(profile).to_contain_text("launch")
        consent = ops.locator("dl.consent")
        expect(consent).to_contain_text("signup")
        expect(consent).to_contain_text("2025-01")
        expect(consent).to_contain_text(f"{shop.origin}/signup")
        browser.close()
        ledger.close()
