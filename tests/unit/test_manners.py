"""Delivery manners (rules.manners, rules.lifecycle.mind/release): caps per local day and rolling
week, quiet hours in the lead's own zone across midnight and DST changes, held mail in order,
exempt mail, and what the simulation counts."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.replay.generate import lines as generated
from leadflow.replay.simulate import group, simulate_many, summary
from rules import lifecycle, manners
from rules.evaluate import evaluate
from rules.lifecycle import Deliver, Hold, LeadCycle, Skip
from rules.models import Action, LeadState
from rules.policy import Delivery
from rules.simulate import run_events
from tests.support import ROOT
from tests.support.policy import MINIMAL, event, policy_from

UTC = timezone.utc
NY = manners.zone("America/New_York")
TOKYO = manners.zone("Asia/Tokyo")
BERLIN = manners.zone("Europe/Berlin")
assert NY is not None and TOKYO is not None and BERLIN is not None
NIGHTS = Delivery(quiet_hours="20:00-08:00")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_the_zone_comes_from_the_profile_else_the_country_else_the_policy():
    rules = Delivery(timezone_field="tz", timezone="Europe/Berlin")
    assert manners.zone_of(rules, {"tz": "Asia/Tokyo", "country": "US"}) == (TOKYO, "lead.tz")
    # a zone the tz database does not know falls through to the country, in any case
    assert manners.zone_of(rules, {"tz": "Mars/Base", "country": " us "}) == (NY, "lead.country US")
    assert manners.zone_of(rules, {"tz": "../../etc/passwd", "country": "XX"}) == (BERLIN,
                                                                                   "the policy's zone")
    assert manners.zone_of(Delivery(), {})[0].key == "UTC"
    assert all(manners.zone(name) is not None for name in manners.COUNTRY_ZONES.values())


def test_quiet_hours_that_wrap_midnight_hold_mail_for_the_local_morning():
    # 22:30 in New York (EST, UTC-5) is 03:30 UTC the next day: held for 08:00 New York time
    slot = manners.place(NIGHTS, [], NY, utc(2026, 1, 7, 3, 30))
    assert slot == manners.Slot(utc(2026, 1, 7, 13), quiet=True)
    # 07:59 local, the same night's end
    assert manners.place(NIGHTS, [], NY, utc(2026, 1, 7, 12, 59)).at == utc(2026, 1, 7, 13)
    # noon local goes at once; so does 08:00 sharp, and 19:59
    for now in (utc(2026, 1, 7, 17), utc(2026, 1, 7, 13), utc(2026, 1, 8, 0, 59)):
        assert manners.place(NIGHTS, [], NY, now) == manners.Slot(now)
    # the same UTC moment is mid-afternoon in Tokyo (UTC+9): no night there
    assert manners.place(NIGHTS, [], TOKYO, utc(2026, 1, 7, 3, 30)).at == utc(2026, 1, 7, 3, 30)
    # quiet hours that do not wrap: a lunch break
    lunch = Delivery(quiet_hours="12:00-13:30")
    assert manners.place(lunch, [], TOKYO, utc(2026, 1, 7, 3, 30)).at == utc(2026, 1, 7, 4, 30)


def test_the_morning_after_a_dst_change_is_the_local_morning():
    # New York springs forward on 2026-03-08: 21:00 EST on the 7th waits for 08:00 EDT (UTC-4)
    assert manners.place(NIGHTS, [], NY, utc(2026, 3, 8, 2)).at == utc(2026, 3, 8, 12)
    # Berlin falls back on 2026-10-25: 23:00 CEST on the 24th waits for 08:00 CET (UTC+1)
    assert manners.place(NIGHTS, [], BERLIN, utc(2026, 10, 24, 21)).at == utc(2026, 10, 25, 7)
    # a night that ends in the hour the clocks skip (02:00-03:00 New York, 2026-03-08)
    early = Delivery(quiet_hours="23:00-02:30")
    assert manners.place(early, [], NY, utc(2026, 3, 8, 5)).at == utc(2026, 3, 8, 7, 30)


def test_the_day_cap_counts_the_lead_s_own_day():
    one = Delivery(max_per_day=1)
    sent = [utc(2026, 1, 5, 14)]  # 23:00 in Tokyo on the 5th
    # 00:30 in Tokyo is a new local day, though the same UTC day: it goes
    assert manners.place(one, sent, TOKYO, utc(2026, 1, 5, 15, 30)).at == utc(2026, 1, 5, 15, 30)
    # in New York both are on the 5th: it waits for the local midnight (05:00 UTC on the 6th)
    slot = manners.place(one, sent, NY, utc(2026, 1, 5, 15, 30))
    assert slot == manners.Slot(utc(2026, 1, 6, 5), capped=True)
    # with quiet hours, for the morning after that midnight
    both = Delivery(max_per_day=1, quiet_hours="20:00-08:00")
    assert manners.place(both, sent, NY, utc(2026, 1, 5, 15, 30)) == manners.Slot(
        utc(2026, 1, 6, 13), capped=True, quiet=True)


def test_the_week_cap_is_a_rolling_week_and_skip_keeps_mail_from_going():
    two = Delivery(max_per_week=2)
    sent = [utc(2026, 1, 5, 10), utc(2026, 1, 7, 10)]
    # the third waits until the first leaves the 168 hours before it
    slot = manners.place(two, sent, BERLIN, utc(2026, 1, 8, 10))
    assert slot == manners.Slot(utc(2026, 1, 12, 10), capped=True)
    assert manners.place(two, sent, BERLIN, utc(2026, 1, 12, 10)).at == utc(2026, 1, 12, 10)
    skip = Delivery(max_per_week=2, when_capped="skip", quiet_hours="20:00-08:00")
    assert manners.place(skip, sent, BERLIN, utc(2026, 1, 8, 10)) == manners.Slot(None, capped=True)
    # skip is for caps: quiet hours still only move mail
    assert manners.place(skip, [], BERLIN, utc(2026, 1, 8, 22)).at == utc(2026, 1, 9, 7)


def test_held_mail_keeps_its_order_and_its_slots():
    rules = Delivery(max_per_day=1, quiet_hours="20:00-08:00", timezone="America/New_York")
    cycle = LeadCycle()
    night = utc(2026, 1, 7, 3, 30)  # 22:30 in New York
    lead = policy_lead()
    acts = [lifecycle.mind(cycle, send(content, rules), lead, night) for content in ("a", "b", "c")]
    assert [type(a) for a in acts] == [Hold, Hold, Hold]
    # one a morning, each after the one before: 08:00 New York on the 7th, 8th and 9th
    assert [h.due for h in cycle.held] == [utc(2026, 1, 7, 13), utc(2026, 1, 8, 13), utc(2026, 1, 9, 13)]
    assert acts[0].why == ("e-mail a held until 2026-01-07 08:00 America/New_York (the policy's zone): "
                           "quiet hours 20:00-08:00")
    assert acts[1].why.endswith("quiet hours 20:00-08:00; at most 1 a day; mail held before it")
    assert lifecycle.next_release(cycle) == utc(2026, 1, 7, 13)
    assert lifecycle.release(cycle, utc(2026, 1, 7, 12, 59)) == []
    out = lifecycle.release(cycle, utc(2026, 1, 8, 13))
    assert [a.action.content for a in out if isinstance(a, Deliver)] == ["a", "b"]
    assert lifecycle.next_release(cycle) == utc(2026, 1, 9, 13)


def test_exempt_mail_is_never_held_and_a_stopped_track_drops_its_held_mail():
    rules = Delivery(max_per_day=1, quiet_hours="20:00-08:00")
    cycle = LeadCycle()
    night = utc(2026, 1, 7, 3, 30)
    lead = policy_lead()
    # no manners on the action: transactional content, a withheld send, a policy without delivery:
    plain = Action(kind="send", key="k-plain", content="receipt")
    assert lifecycle.mind(cycle, plain, lead, night) == Deliver(plain)
    assert cycle.booked == [] and cycle.held == []
    tracked = Action(kind="send", key="k-t", content="guide", track="awareness", manners=rules)
    assert isinstance(lifecycle.mind(cycle, tracked, lead, night), Hold)
    (said,) = lifecycle.drop_held(cycle, "awareness")
    assert said.why == "held e-mail guide not sent: track awareness stopped"
    assert cycle.held == [] and cycle.booked == []


def test_a_held_send_of_a_lead_whose_mail_stopped_is_recorded_withheld():
    rules = Delivery(quiet_hours="20:00-08:00")
    cycle = LeadCycle(lead=policy_lead())
    lifecycle.mind(cycle, send("a", rules), policy_lead(), utc(2026, 1, 7, 3, 30))
    assert cycle.lead is not None
    cycle.lead = cycle.lead.model_copy(update={"mail_stop": "unsubscribed"})
    (out,) = lifecycle.release(cycle, utc(2026, 1, 7, 12))
    assert isinstance(out, Deliver) and out.action.withheld == "the lead unsubscribed"


def test_no_more_than_max_held_wait_in_a_lead():
    rules = Delivery(max_per_day=1)
    cycle = LeadCycle()
    lead = policy_lead()
    now = utc(2026, 1, 7, 12)
    acts = [lifecycle.mind(cycle, send(f"c{i}", rules), lead, now) for i in range(manners.MAX_HELD + 2)]
    assert isinstance(acts[0], Deliver) and sum(isinstance(a, Hold) for a in acts) == manners.MAX_HELD
    assert isinstance(acts[-1], Skip)
    assert acts[-1].why.endswith(f"{manners.MAX_HELD} e-mails are held already")


POLICY = MINIMAL + """\
  - {id: start, when: {state: scored, event.type: signup}, then: {track: welcome, send: receipt}}
content: [welcome-guide, case-study, receipt]
profile: {tz: text, country: text}
nurture:
  tracks:
    welcome:
      steps:
        - {after: 0d, send: welcome-guide}
        - {after: 1h, send: case-study}
delivery: {max_per_day: 1, quiet_hours: "20:00-08:00", timezone_field: tz, transactional: [receipt]}
"""


def test_the_simulation_holds_and_counts_what_the_manners_move():
    policy = policy_from(POLICY)
    manners_of = {a.content: a.manners for d in run_events(policy, "l", [
        event("signup", utc(2026, 1, 7, 3, 30), lead={"tz": "America/New_York"})], record=True).decisions
        for a in d.actions if a.kind == "send"}
    assert manners_of["receipt"] is None and manners_of["welcome-guide"] is not None
    # signed up at 22:30 New York time: the receipt goes at once; the guide waits for 08:00, the
    # case study (due an hour later) for the next day's 08:00, one a day
    night = utc(2026, 1, 7, 3, 30)
    result = run_events(policy, "l", [event("signup", night, lead={"tz": "America/New_York"}),
                                      event("page_view", utc(2026, 1, 9))], trace=True)
    assert result.sent == ["receipt", "welcome-guide", "case-study"]
    assert (result.sends_moved, result.sends_skipped) == (2, 0)
    held = [line for _, line in result.lines if " held until " in line]
    assert [h.split(" (")[0] for h in held] == [
        "e-mail welcome-guide held until 2026-01-07 08:00 America/New_York",
        "e-mail case-study held until 2026-01-08 08:00 America/New_York"]
    # in Tokyo it is 12:30: the guide goes at once, the case study waits for Tokyo's next day
    tokyo = run_events(policy, "l", [event("signup", utc(2026, 1, 7, 3, 30), lead={"tz": "Asia/Tokyo"})],
                       until=utc(2026, 1, 9))
    assert tokyo.sent == ["welcome-guide", "receipt", "case-study"] and tokyo.sends_moved == 1
    skipping = policy_from(POLICY.replace("max_per_day: 1,", "max_per_day: 1, when_capped: skip,"))
    result = run_events(skipping, "l", [event("signup", utc(2026, 1, 7, 3, 30), lead={"tz": "Asia/Tokyo"})],
                        until=utc(2026, 1, 9))
    assert result.sent == ["welcome-guide", "receipt"]
    assert (result.sends_moved, result.sends_skipped) == (0, 1)
    # what `policy simulate` reports of many leads (the JSON's keys, the table's line)
    figures = summary([result.as_dict(), tokyo.as_dict()])
    assert (figures["sends_moved"], figures["sends_skipped"]) == (1, 1)


def send(content: str, rules: Delivery) -> Action:
    return Action(kind="send", key=f"k-{content}", content=content, manners=rules)


def policy_lead() -> LeadState:
    """A lead of the smallest policy, as its sign-up leaves it."""
    return evaluate(policy_from(MINIMAL), None, event("signup", utc(2026, 1, 1)), utc(2026, 1, 1)).lead


ZONES = ["America/New_York", "Asia/Tokyo", "Europe/Berlin", "Australia/Sydney", "Asia/Kolkata",
         "America/Sao_Paulo", "Pacific/Auckland", "UTC"]
HOURS = ["20:00-08:00", "22:30-06:15", "12:00-13:00", "00:00-07:00", "01:30-03:30"]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(zone=st.sampled_from(ZONES), quiet=st.sampled_from([None, *HOURS]),
       day=st.sampled_from([None, 1, 2]), week=st.sampled_from([None, 2, 3, 5]),
       # minutes from a start that puts every DST change of 2026 within reach
       start=st.integers(0, 365 * 24 * 60),
       gaps=st.lists(st.integers(0, 3 * 24 * 60), min_size=1, max_size=12))
def test_every_slot_keeps_the_manners_and_mail_keeps_its_order(zone: str, quiet: str | None, day: int | None,
                                                              week: int | None, start: int, gaps: list[int]):
    rules = Delivery(quiet_hours=quiet, max_per_day=day, max_per_week=week, timezone=zone)
    tz = manners.zone(zone)
    assert tz is not None
    span = manners.quiet_span(rules)
    booked: list[datetime] = []
    now = utc(2026, 1, 1) + timedelta(minutes=start)
    for gap in gaps:
        now += timedelta(minutes=gap)
        slot = manners.place(rules, booked, tz, now, held=0)
        assert slot.at is not None and slot.at >= now and all(slot.at >= b for b in booked)
        if span is not None:
            assert manners.quiet_until(slot.at, span, tz) is None, slot
        if day is not None:
            local = slot.at.astimezone(tz).date()
            assert sum(b.astimezone(tz).date() == local for b in booked) < day
        if week is not None:
            assert sum(slot.at - manners.WEEK < b for b in booked) < week
        # only what the manners ask for moves a send: one moved by nothing else went at once
        assert slot.moved(now) == (slot.quiet or slot.capped or slot.queued)
        booked.append(slot.at)


def test_policy_simulate_counts_the_moves_alike_on_any_number_of_cores(tmp_path: Path):
    """The shipped policy with manners over a generated history: the same leads moved and skipped
    in one process and in two, reported by `policy simulate --json` and in its table."""
    shipped = (ROOT / "policies" / "lead-lifecycle.v1.yaml").read_text()
    policy = tmp_path / "lead-lifecycle.v1.yaml"
    policy.write_text(shipped + 'delivery: {max_per_day: 1, max_per_week: 2, when_capped: skip, '
                      'quiet_hours: "21:00-09:00", timezone: America/New_York}\n')
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(generated(60, 30, seed=5)) + "\n")
    with log.open() as f:
        leads, last = group(f)
    one = simulate_many(str(policy), leads, last, processes=1)
    assert simulate_many(str(policy), leads, last, processes=2) == one
    figures = summary(one)
    assert figures["sends_moved"] > 0 and figures["sends_skipped"] > 0, figures
    cli = [sys.executable, "-m", "leadflow", "policy", "simulate", str(policy), "--events", str(log)]
    said = subprocess.run([*cli, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert said.returncode == 0, said.stderr
    reported = json.loads(said.stdout)
    assert (reported["sends_moved"], reported["sends_skipped"]) == (figures["sends_moved"],
                                                                     figures["sends_skipped"])
    table = subprocess.run(cli, cwd=ROOT, capture_output=True, text=True, timeout=300).stdout
    assert (f"e-mails under delivery manners: {figures['sends_moved']} moved to a later slot, "
            f"{figures['sends_skipped']} skipped") in table
