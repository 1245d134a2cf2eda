"""Manners for marketing e-mail: when a send the policy asks for may go out. Pure: told the
policy's `delivery:` settings, the times of the lead's marketing e-mails of the last week (gone,
or held for a later slot), the lead's time zone and the time now, `place` says: now, at a later
moment, or not at all. rules.lifecycle asks it for every marketing send, so LeadWorkflow and the
simulation hold and skip the same mail (docs/policy-format.md, "Manners").

The caps count marketing e-mail only: `max_per_day` in the lead's local calendar day,
`max_per_week` in any 168 hours in a row (a rolling week: a calendar week would let a lead get two
weeks' worth across a Sunday night). Quiet hours are local wall-clock times and may wrap midnight.
Held mail keeps its order: a send never takes a slot before one held already (a track's second
e-mail never overtakes its first), so every slot it checks has all the mail before it known.

The time zone is the tz database's (zoneinfo): a worker reads it from the system or from the
tzdata package. A lead's hours follow its rules as that database has them when the send is
decided; a later edition of the database never moves a slot already taken."""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Any

from rules.policy import Delivery

WEEK = timedelta(days=7)
# A lead's held mail, at most: a policy that sends far more than its caps let out would otherwise
# queue e-mail months ahead in the lead's state (which travels through continue-as-new).
MAX_HELD = 50
# Each step of `place` moves the candidate slot forward to the end of a quiet night, a local
# midnight or the moment the week's oldest e-mail leaves the window; this many always suffice
# for caps up to the schema's maxima with MAX_HELD mail held, and bound the search if not.
MAX_STEPS = 1000

# ISO 3166 alpha-2 code -> one representative zone, for leads whose profile names a country but
# no zone: the countries most leads come from. Where a country spans zones the zone of its
# largest business centre stands for it (US: New York, CA: Toronto, BR: Sao Paulo, AU: Sydney,
# RU: Moscow); a lead there with a zone of its own says so in `timezone_field`.
COUNTRY_ZONES: dict[str, str] = {
    "US": "America/New_York", "CA": "America/Toronto", "MX": "America/Mexico_City",
    "BR": "America/Sao_Paulo", "AR": "America/Argentina/Buenos_Aires", "CL": "America/Santiago",
    "CO": "America/Bogota", "GB": "Europe/London", "IE": "Europe/Dublin", "PT": "Europe/Lisbon",
    "ES": "Europe/Madrid", "FR": "Europe/Paris", "BE": "Europe/Brussels", "NL": "Europe/Amsterdam",
    "LU": "Europe/Luxembourg", "DE": "Europe/Berlin", "CH": "Europe/Zurich", "AT": "Europe/Vienna",
    "IT": "Europe/Rome", "DK": "Europe/Copenhagen", "NO": "Europe/Oslo", "SE": "Europe/Stockholm",
    "FI": "Europe/Helsinki", "PL": "Europe/Warsaw", "CZ": "Europe/Prague", "RO": "Europe/Bucharest",
    "GR": "Europe/Athens", "TR": "Europe/Istanbul", "UA": "Europe/Kyiv", "RU": "Europe/Moscow",
    "IL": "Asia/Jerusalem", "AE": "Asia/Dubai", "SA": "Asia/Riyadh", "ZA": "Africa/Johannesburg",
    "NG": "Africa/Lagos", "EG": "Africa/Cairo", "KE": "Africa/Nairobi", "IN": "Asia/Kolkata",
    "SG": "Asia/Singapore", "MY": "Asia/Kuala_Lumpur", "ID": "Asia/Jakarta", "PH": "Asia/Manila",
    "TH": "Asia/Bangkok", "VN": "Asia/Ho_Chi_Minh", "CN": "Asia/Shanghai", "HK": "Asia/Hong_Kong",
    "TW": "Asia/Taipei", "KR": "Asia/Seoul", "JP": "Asia/Tokyo", "AU": "Australia/Sydney",
    "NZ": "Pacific/Auckland",
}


@lru_cache(maxsize=512)
def zone(name: str) -> zoneinfo.ZoneInfo | None:
    """The zone of an IANA name, or None for a name the tz database does not know (a profile
    field may hold anything: "CET+1", "../etc", "")."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def zone_of(manners: Delivery, profile: Mapping[str, Any]) -> tuple[zoneinfo.ZoneInfo, str]:
    """The lead's time zone and where it came from: the profile's zone field, else its country
    field (COUNTRY_ZONES), else the policy's default."""
    field = manners.timezone_field
    named = profile.get(field) if field else None
    if isinstance(named, str) and (found := zone(named.strip())) is not None:
        return found, f"lead.{field}"
    field = manners.country_field
    country = profile.get(field) if field else None
    if isinstance(country, str) and (name := COUNTRY_ZONES.get(country.strip().upper())):
        found = zone(name)
        if found is not None:
            return found, f"lead.{field} {country.strip().upper()}"
    return zone(manners.timezone) or zoneinfo.ZoneInfo("UTC"), "the policy's zone"


@dataclass(frozen=True)
class Slot:
    """Where `place` put a send: `at` (None: skipped), `capped` (a cap moved or skipped it),
    `quiet` (quiet hours moved it), `queued` (it waits behind mail held before it)."""

    at: datetime | None
    capped: bool = False
    quiet: bool = False
    queued: bool = False

    def moved(self, now: datetime) -> bool:
        return self.at is not None and self.at > now


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def quiet_span(manners: Delivery) -> tuple[int, int] | None:
    """The quiet hours as (start, end) minutes of the local day, or None."""
    if manners.quiet_hours is None:
        return None
    start, end = manners.quiet_hours.split("-")
    return _minutes(start), _minutes(end)


def _at(day: datetime, minute: int, tz: zoneinfo.ZoneInfo) -> datetime:
    """That local day's wall-clock minute, in UTC. A minute a DST change skips (02:30 the night
    clocks go forward) is read with the offset before the change: the same instant as the minute
    that follows the gap by as much."""
    moment = datetime.combine(day.date(), time(minute // 60, minute % 60), tzinfo=tz)
    return moment.astimezone(timezone.utc)


def quiet_until(moment: datetime, span: tuple[int, int], tz: zoneinfo.ZoneInfo) -> datetime | None:
    """When the quiet hours that `moment` falls in end (None: it is not in them)."""
    local = moment.astimezone(tz)
    start, end = span
    minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
    if start < end:
        return _at(local, end, tz) if start <= minute < end else None
    if minute >= start:  # the evening part of a night that wraps midnight: its end is tomorrow
        return _at(local + timedelta(days=1), end, tz)
    return _at(local, end, tz) if minute < end else None


def next_midnight(moment: datetime, tz: zoneinfo.ZoneInfo) -> datetime:
    return _at(moment.astimezone(tz) + timedelta(days=1), 0, tz)


def place(manners: Delivery, booked: Sequence[datetime], tz: zoneinfo.ZoneInfo, now: datetime,
          held: int = 0) -> Slot:
    """The first moment from `now` a marketing send may go out within the manners, given the
    lead's marketing e-mails of the last week and those held (`booked`, in order), and `held` of
    them still to go. A slot a cap moved is skipped instead when the policy says so; quiet hours
    only ever move a send."""
    if held >= MAX_HELD:
        return Slot(None, capped=True)
    span = quiet_span(manners)
    # never before mail held already: it keeps its order, and every slot checked has all the
    # mail before it known
    at = max([now, *booked])
    queued = at > now
    capped = quiet = False
    for _ in range(MAX_STEPS):
        if span is not None and (until := quiet_until(at, span, tz)) is not None:
            at, quiet = max(until, at + timedelta(minutes=1)), True
            continue
        if manners.max_per_day is not None:
            day = at.astimezone(tz).date()
            if sum(1 for b in booked if b.astimezone(tz).date() == day) >= manners.max_per_day:
                at, capped = next_midnight(at, tz), True
                continue
        if manners.max_per_week is not None:
            window = [b for b in booked if at - WEEK < b <= at]
            if len(window) >= manners.max_per_week:
                # the moment enough of the oldest leave the window for one more
                at, capped = window[len(window) - manners.max_per_week] + WEEK, True
                continue
        break
    else:
        return Slot(None, capped=True)
    if capped and manners.when_capped == "skip":
        return Slot(None, capped=True, quiet=quiet, queued=queued)
    return Slot(at, capped=capped, quiet=quiet, queued=queued)


def recent(booked: Sequence[datetime], now: datetime) -> list[datetime]:
    """The booked times a cap can still count from `now` on (those of the last week)."""
    return [b for b in booked if b > now - WEEK]


def local_time(moment: datetime, tz: zoneinfo.ZoneInfo) -> str:
    """A moment as the lead's clock shows it, for its story: 2026-03-09 08:00 America/New_York."""
    return f"{moment.astimezone(tz).strftime('%Y-%m-%d %H:%M')} {tz.key}"


__all__ = ["COUNTRY_ZONES", "MAX_HELD", "WEEK", "Slot", "local_time", "next_midnight", "place",
           "quiet_span", "quiet_until", "recent", "zone", "zone_of"]
