"""A CSV record to its lead's events, as a live lead would have taken them: a `signup` at the row's
created_at with its profile and `data.source`, the behaviour the counts and activity columns say
(their times are not in a CRM export: one an hour after the sign-up, in the map's order), and the
outcome label last (`rules.models.OUTCOME`). Each event is validated as the intake validates it
(`rules.models.Event`, its caps) and named by its content (`rules.identity.with_id`): the same row
gives the same events, ids and all, on every import."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError

from leadflow.importing.cells import as_kind, moment, number
from leadflow.importing.mapping import MAX_COUNT, Column, ImportMap, Mapped, Valued, fold, header_key
from rules.identity import lead_key, with_id
from rules.models import OUTCOME, Event

STEP = timedelta(hours=1)  # between a row's events: their order is known, their times are not


class Refused(ValueError):
    """Why a row is not imported (said with its line)."""


@dataclass
class Lead:
    key: str  # the workflow id a live lead would have (rules.identity.lead_key)
    events: list[Event]
    source: str | None
    outcome: str | None


def source_of(spec: ImportMap, text: str | None) -> str | None:
    """A lead's source: trimmed, case-folded and value-mapped, so `Google`, ` google ` and a
    mapped `GOOGLE ADS` are one source."""
    if text is None:
        return None
    folded = fold(text)
    mapped = fold(str((spec.source.values if spec.source else {}).get(folded, folded) or ""))
    return mapped or None


def in_utc(event: Event) -> Event:
    """The event with its time in UTC: its id comes from its content, and one moment written
    with another offset (a CRM's export in another time zone) must be the same event."""
    if event.at is None or event.at.utcoffset() == timedelta(0):
        return event
    return event.model_copy(update={"at": event.at.astimezone(timezone.utc)})


def validated(raw: dict[str, Any], where: Callable[[tuple[Any, ...]], str] | None = None) -> Event:
    """The event as the intake validates it, with its content's id; Refused names the field (as
    `where` says a validation error's place)."""
    try:
        return with_id(in_utc(Event.model_validate(raw)))
    except ValidationError as err:
        first = err.errors()[0]
        place = where(first["loc"]) if where else ".".join(str(p) for p in first["loc"]) or "event"
        raise Refused(f"{place}: {first['msg'].removeprefix('Value error, ')}") from None


class RowReader:
    def __init__(self, spec: ImportMap, header: list[str], at: datetime | None) -> None:
        keys = [header_key(h) for h in header]
        self.spec, self.at = spec, at
        self._index = {c.key: keys.index(c.key) for c in spec.columns()}
        self.ignored: Counter[tuple[str, str]] = Counter()  # (column, value) no event is mapped to

    def _cell(self, cells: list[str], column: Column | None) -> str | None:
        """The cell's text, trimmed; None when the map reads it as empty."""
        if column is None:
            return None
        text = cells[self._index[column.key]].strip()
        return None if fold(text) in self.spec.missing else text

    def lead(self, cells: list[str]) -> Lead:
        spec = self.spec
        email, external = self._cell(cells, spec.email), self._cell(cells, spec.id)
        if email is None and external is None:
            named = " or ".join(repr(c.name) for c in (spec.email, spec.id) if c is not None)
            raise Refused(f"no e-mail and no id ({named} empty)")
        identity = {k: v for k, v in (("email", email), ("external_id", external)) if v is not None}
        created = self._time(cells, spec.created_at.column, self.at)
        source = source_of(spec, self._cell(cells, spec.source.column if spec.source else None))
        profile = {f.name: self._profile(f.name, f.cell, f.kind, cells) for f in spec.profile}
        raws: list[dict[str, Any]] = [
            {"type": "signup", "at": created, "lead": {**identity, **{k: v for k, v in profile.items()
                                                                     if v is not None}},
             "data": {"source": source} if source is not None else {}}]
        unmapped: list[tuple[str, str]] = []
        for kind, data in self._behaviour(cells, unmapped):
            raws.append({"type": kind, "at": created + STEP * len(raws), "lead": identity, "data": data})
        outcome = self._outcome(cells, identity, raws[-1]["at"] + STEP)
        if outcome is not None:
            raws.append(outcome)
        events = [self._validated(raw) for raw in raws]
        self.ignored.update(unmapped)  # of the rows that import
        return Lead(lead_key(events[0].lead), events, source, outcome["data"]["outcome"] if outcome else None)

    def _time(self, cells: list[str], column: Column | None, default: datetime | None) -> datetime:
        text = self._cell(cells, column)
        if text is None:
            if default is None:
                raise Refused(f"{column.name if column else 'created_at'}: empty, and the run has no --at")
            return default
        spec = self.spec.created_at
        fmt = spec.format if column == spec.column else None  # the format is created_at's own
        try:
            return moment(text, self.spec.zone, spec.day_first, fmt)
        except ValueError as err:
            raise Refused(f"{column.name if column else 'created_at'}: {err}") from None

    def _profile(self, name: str, cell: Valued, kind: str, cells: list[str]) -> Any:
        text = self._cell(cells, cell.column)
        if text is None:
            return None
        value = cell.values.get(fold(text), text)
        if not isinstance(value, str):
            return value  # the map's own value, as YAML typed it
        try:
            return as_kind(value, kind)
        except ValueError as err:
            raise Refused(f"{name} ({cell.column.name if cell.column else name}): {err}") from None

    def _behaviour(self, cells: list[str], unmapped: list[tuple[str, str]]
                   ) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        for spec in self.spec.events:
            text = self._cell(cells, spec.column)
            if text is None:
                continue
            if isinstance(spec, Mapped):
                meant = spec.values.get(fold(text))
                if meant is None:
                    unmapped.append((spec.column.name, text))
                else:
                    out.append((meant[0], dict(meant[1])))
                continue
            try:
                n = number(text)
            except ValueError as err:
                raise Refused(f"{spec.column.name}: {err}") from None
            if not isinstance(n, int) or not 0 <= n <= MAX_COUNT:
                raise Refused(f"{spec.column.name}: {text!r} is not a count of events (a whole number, 0 to "
                              f"{MAX_COUNT})")
            out += [(spec.type, dict(spec.data))] * n
        return out

    def _outcome(self, cells: list[str], identity: dict[str, str], after: datetime) -> dict[str, Any] | None:
        spec = self.spec.outcome
        text = self._cell(cells, spec.column) if spec else None
        if spec is None or text is None:
            return None
        said = "won" if fold(text) in spec.won else "lost" if fold(text) in spec.lost else None
        if said is None:
            return None  # open, or a stage the map does not call won or lost
        at = self._time(cells, spec.at, after) if spec.at is not None else after
        reason = self._cell(cells, spec.reason) or text
        return {"type": OUTCOME, "at": max(at, after), "lead": identity,
                "data": {"outcome": said, "reason": reason}}

    def _validated(self, raw: dict[str, Any]) -> Event:
        return validated(raw, self._where)

    def _where(self, loc: tuple[Any, ...]) -> str:
        """A validation error's place, as the export names it: the column behind a lead's field."""
        if len(loc) >= 2 and loc[0] == "lead":
            columns = {"email": self.spec.email, "external_id": self.spec.id,
                       **{f.name: f.cell.column for f in self.spec.profile}}
            column = columns.get(str(loc[1]))
            if column is not None:
                return f"{loc[1]} ({column.name})"
        return ".".join(str(p) for p in loc) or "event"

