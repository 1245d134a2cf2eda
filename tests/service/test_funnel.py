"""The funnel from the live system: leads of three sources through real workflows (one converts,
one is sent back with a reason, one is junk, one nurtures), then `leadflow report funnel` and
the ops page read what the Decisions recorded."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import httpx

from tests.support.temporal_harness import ROOT, api, free_port, harness

HOT = {"role": "vp", "budget": 60000, "timeline": "this-quarter", "company_size": 250}
OPS_KEY = "ops-key-0123456789abcdef"


def test_funnel_counts_states_stages_reasons_and_sources_from_live_leads(tmp_path):
    async def scenario() -> None:
        settings = {"api_keys": f"ops:{OPS_KEY}", "http": f"127.0.0.1:{free_port()}"}
        async with harness(tmp_path, **settings) as h, api(h) as base:
            async def hand_off(email: str, source: str) -> tuple[object, object]:
                lead = await h.signup(email, data={"source": source}, **HOT)
                await lead.execute_update("submit", {"id": "d", "type": "demo_request"})
                st = await h.state(lead)
                return lead, h.client.get_workflow_handle(st["open_handoff"])

            won, task = await hand_off("won@acme.example", "referral")
            await task.execute_update("accept", {"by": "sam"})
            back, task = await hand_off("back@beta.example", "paid-search")
            await h.env.sleep(3600 * 24)  # a day in sales-ready before the answer
            await task.execute_update("reject", {"reason": "no budget until next year", "by": "sam"})
            await h.signup("junk@mailinator.com", data={"source": "paid-search"})
            await h.signup("reader@gamma.example", data={"source": "organic"}, role="analyst")
            for lead, want in ((won, "converted"), (back, "nurturing")):
                for _ in range(100):
                    if (await h.state(lead))["state"] == want:
                        break
                    await asyncio.sleep(0.05)

            out = tmp_path / "funnel"
            done = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "leadflow", "report", "funnel", "--json", "--out",
                                 str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                env={**os.environ, "LEADFLOW_HOME": str(tmp_path)})
            assert done.returncode == 0, done.stderr
            r = json.loads(done.stdout)
            assert r["leads"] == 4
            reached = r["overall"]["reached"]
            assert (reached["captured"], reached["sales-ready"], reached["converted"],
                    reached["disqualified"]) == (4, 2, 1, 1)
            assert r["overall"]["conversion"]["sales-ready -> converted"] == 0.5
            assert r["rejection_reasons"] == {"no budget until next year": 1}
            assert r["disqualification_reasons"] == {"disposable e-mail domain": 1}
            # the rejected lead spent a day in sales-ready; the accepted one no time at all
            ready = r["time_in_stage_days"]["sales-ready"]
            assert ready["stays"] == 2 and 0.99 <= ready["p90"] <= 1.01
            assert r["sources"]["referral"]["share_of_captured"]["converted"] == 1.0
            assert r["sources"]["paid-search"]["leads"] == 2
            assert r["sources"]["paid-search"]["share_of_captured"]["sales-ready"] == 0.5
            assert list(r["groups"]) == ["v1"] and r["groups"]["v1"]["leads"] == 4
            page = (out / "funnel.html").read_text()
            assert page.count("data:image/png;base64,") == 4 and "no budget until next year" in page
            assert (out / "funnel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

            # the same report for ops in the pages
            async with httpx.AsyncClient(base_url=base, follow_redirects=True) as browser:
                login = await browser.get("/login")
                token = login.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
                await browser.post("/login", data={"key": OPS_KEY, "csrf": token})
                shown = await browser.get("/funnel?by=week")
                assert shown.status_code == 200 and "no budget until next year" in shown.text
                assert shown.text.count("data:image/png;base64,") == 4
                bad = await browser.get("/funnel?since=someday")
                assert bad.status_code == 422 and "is not a date" in bad.text

    asyncio.run(scenario())


def _paths(stay_seconds: float) -> list:
    """Two leads of v1 that went captured -> scored -> nurturing in their sign-up's evaluation,
    one of which left nurturing for sales-ready `stay_seconds` later."""
    from leadflow.reports.funnel import LeadPath

    t = 1_770_000_000.0
    quick = [(t, "captured", "scored", "score-new", ""), (t, "scored", "nurturing", "start-nurture", "")]
    ready = [(t + stay_seconds, "nurturing", "sales-ready", "qualify", "fit and intent agree")]
    return [LeadPath("lead-a", t, 1, moves=quick + ready), LeadPath("lead-b", t, 1, moves=list(quick))]


def _axes_drawn(monkeypatch) -> dict[str, tuple[float, float]]:
    """Each chart's title and value axis (y), as drawn: the figure is looked at before it is
    turned into PNG bytes."""
    from leadflow.reports import funnel as report_funnel

    drawn: dict[str, tuple[float, float]] = {}
    real = report_funnel.png

    def looked_at(fig) -> bytes:
        ax = fig.axes[0]
        drawn[ax.get_title()] = ax.get_xlim() if ax.get_title() == "Funnel" else ax.get_ylim()
        return real(fig)

    monkeypatch.setattr(report_funnel, "png", looked_at)
    return drawn


def test_no_lead_has_left_a_stage_after_time_in_it_so_the_page_says_not_enough_data(monkeypatch):
    from leadflow.reports.funnel import body, charts, funnel, table

    drawn = _axes_drawn(monkeypatch)
    r = funnel(_paths(0.0))  # every stay that ended, ended at once: nothing to measure
    images = charts(r)
    assert "stages.png" not in images and "Time in each stage" not in drawn
    page = body(r, images)
    assert "Time in each stage: not enough data yet" in page
    assert "time in stage (days): not enough data yet" in table(r)
    # no chart with half of its axis below zero: shares of nothing start at zero
    assert drawn and all(low >= 0 for low, _ in drawn.values()), drawn


def test_a_lead_that_stayed_a_day_in_a_stage_is_charted(monkeypatch):
    from leadflow.reports.funnel import body, charts, funnel, table

    drawn = _axes_drawn(monkeypatch)
    r = funnel(_paths(86400.0))
    images = charts(r)
    assert "stages.png" in images and drawn["Time in each stage"][0] == 0
    assert drawn["Time in each stage"][1] > 1  # a day's bar fits
    assert "not enough data" not in body(r, images) and "not enough data" not in table(r)
    assert r["time_in_stage_days"]["nurturing"]["median"] == 1.0
