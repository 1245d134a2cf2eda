"""Delivery manners live, on the time-skipping server (issue 26, points 5 and 7): the shipped
policy with `delivery:` (one marketing e-mail a local day, none 20:00-08:00, the zone from the
profile). A lead in New York and one in Tokyo sign up at the same moment, 02:00 UTC: evening in
New York, late morning in Tokyo. The New York welcome e-mail waits for 08:00 New York time, the
Tokyo one goes at once; two weeks on, the track's last e-mail and the next track's first fall
due together, and the day cap holds the second for the lead's next local morning. `policy
simulate` on the archive holds the same e-mails until the same moments."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from leadflow.archive.events import EventArchive
from leadflow.db.database import Database
from leadflow.pages.render import templates
from rules.compile import load_compiled
from rules.simulate import simulate_people
from tests.support.temporal_harness import ROOT, Harness, harness

UTC = timezone.utc
DELIVERY = 'delivery: {max_per_day: 1, quiet_hours: "20:00-08:00", timezone_field: tz}\n'
PROFILE = {"role": "director", "budget": 20000, "company_size": 80}
LEADS = {"ny@manners.example": "America/New_York", "tokyo@manners.example": "Asia/Tokyo"}


def _policy_dir(root: Path) -> Path:
    shipped = (ROOT / "policies" / "lead-lifecycle.v1.yaml").read_text()
    assert "  consent: boolean\n" in shipped
    folder = root / "policies"
    folder.mkdir()
    (folder / "lead-lifecycle.v1.yaml").write_text(
        shipped.replace("  consent: boolean\n", "  consent: boolean\n  tz: text\n") + DELIVERY)
    (folder / "roster.yaml").write_text((ROOT / "policies" / "roster.yaml").read_text())
    return folder


def _morning(moment: datetime, zone: str, days: int = 0) -> datetime:
    """08:00 local on the local day of `moment` (plus `days`), in UTC."""
    tz = ZoneInfo(zone)
    day: date = moment.astimezone(tz).date() + timedelta(days=days)
    return datetime.combine(day, time(8), tzinfo=tz).astimezone(UTC)


async def _sleep_until(h: Harness, moment: datetime) -> None:
    ahead = (moment - await h.env.get_current_time()).total_seconds()
    assert ahead > 0, moment
    await h.env.sleep(ahead)


async def _sent(h: Harness, lead_id: str, count: int) -> list[str]:
    """The lead's e-mails in the ledger once there are `count` (none more may come)."""
    await h.delivered(lead_id, "email", until=lambda m: len(m) >= count)
    await asyncio.sleep(0.3)  # a further send would have started by now
    subjects = [m["subject"] for m in h.delivery.ledger.list(lead=lead_id, kind="email")]
    assert len(subjects) == count, subjects
    return sorted(subjects)


def test_caps_and_quiet_hours_hold_mail_in_the_lead_s_own_time_zone(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, policy_dir=_policy_dir(tmp_path)) as h:
            now = (await h.env.get_current_time()).astimezone(UTC)
            start = datetime.combine(now.date() + timedelta(days=1), time(2), tzinfo=UTC)
            await _sleep_until(h, start)
            handles = {email: await h.signup(email, tz=zone, **PROFILE) for email, zone in LEADS.items()}
            ids = {email: (await h.state(handle))["lead_id"] for email, handle in handles.items()}
            ny, tokyo = "ny@manners.example", "tokyo@manners.example"

            # 21:00 in New York: the welcome e-mail waits for 08:00 there; 11:00 in Tokyo: it goes
            assert await _sent(h, ids[tokyo], 1) == ["welcome-guide"]
            view = await h.state(handles[ny])
            assert view["state"] == "nurturing"
            welcome_at = _morning(start, "America/New_York", days=1)
            assert [(m["content"], datetime.fromisoformat(m["until"])) for m in view["held"]] == [
                ("welcome-guide", welcome_at)]
            # the lead's page says what waits, and till when
            page = templates.env.get_template("lead.html").render(lead=view, story=[], chart={"lines": []},
                                                                   activity=[], consent={})
            assert f"<b>welcome-guide</b> until {welcome_at:%Y-%m-%d %H:%M} UTC" in page
            assert not h.delivery.ledger.list(lead=ids[ny], kind="email")
            await _sleep_until(h, welcome_at - timedelta(minutes=5))
            assert not h.delivery.ledger.list(lead=ids[ny], kind="email")
            await _sleep_until(h, welcome_at + timedelta(minutes=5))
            assert await _sent(h, ids[ny], 1) == ["welcome-guide"]

            # day 14 at 02:00 UTC: the awareness track's last e-mail and the consideration
            # track's first are due together. Tokyo (11:00): one goes, the cap holds the other
            # for the next Tokyo morning. New York (21:00): both wait for mornings, one a day.
            due = start + timedelta(days=14)
            await _sleep_until(h, due + timedelta(minutes=5))
            tokyo_next = _morning(due, "Asia/Tokyo", days=1)
            view = await h.state(handles[tokyo])
            assert [(m["content"], datetime.fromisoformat(m["until"])) for m in view["held"]] == [
                ("customer-story", tokyo_next)]
            assert "webinar-invite" in await _sent(h, ids[tokyo], 4)
            view = await h.state(handles[ny])
            assert [(m["content"], datetime.fromisoformat(m["until"])) for m in view["held"]] == [
                ("webinar-invite", _morning(due, "America/New_York", days=1)),
                ("customer-story", _morning(due, "America/New_York", days=2))]
            await _sleep_until(h, _morning(due, "America/New_York", days=2) + timedelta(minutes=5))
            everything = ["case-study", "customer-story", "roi-calculator", "webinar-invite", "welcome-guide"]
            assert await _sent(h, ids[tokyo], 5) == everything
            assert await _sent(h, ids[ny], 5) == everything

            held: dict[str, list[str]] = {}
            for email, handle in handles.items():
                story = (await h.state(handle))["story"]
                held[ids[email]] = [s["why"] for s in story if " held until " in s["why"]]
            # replays, and with LEADFLOW_RECORD_HISTORIES=1 is kept for test_replay: held mail
            # in a history must go on replaying
            await h.replay("manners", *handles.values())
            assert held[ids[tokyo]] == [
                f"e-mail customer-story held until {tokyo_next.astimezone(ZoneInfo('Asia/Tokyo')):%Y-%m-%d} "
                "08:00 Asia/Tokyo (lead.tz): quiet hours 20:00-08:00; at most 1 a day"]
            assert len(held[ids[ny]]) == 5  # every one of its e-mails fell due in its evening

            # `policy simulate` on what the archive kept holds the same e-mails until the same times
            until = await h.env.get_current_time()
            policy = load_compiled(str(h.settings.policy_dir / "lead-lifecycle.v1.yaml"))
            by_lead: dict[str, list[dict[str, Any]]] = {lead_id: [] for lead_id in ids.values()}
            for raw in EventArchive(Database.of(h.settings)).export():
                if raw["lead_id"] in by_lead:
                    by_lead[raw["lead_id"]].append(raw)
            results = simulate_people(policy, by_lead, until, trace=True)
            for lead_id, result in results.items():
                assert [line for _, line in result.lines if " held until " in line] == held[lead_id]
                assert result.sends_moved == len(held[lead_id]) and result.sends_skipped == 0
                assert sorted(result.sent) == everything
    asyncio.run(scenario())
