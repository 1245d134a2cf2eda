"""The import map: which column of a CRM export says what (docs/import.md), loaded with the line of
every key so that each problem is said as `map.yaml:7: message`, all of them at once.

It is checked twice: its own shape, and what the active policy allows (profile fields it declares,
event types it knows) when it is loaded; the columns it names against the export's header once the
header is read (`ImportMap.check_header`). Header names and the map's column names are compared
trimmed, with runs of spaces as one and case-folded: `Lead Source`, ` lead  source` and
`LEAD SOURCE` are one column."""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from datetime import timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rules.models import MAX_FIELD_NAME, MAX_PROFILE_FIELDS, OUTCOME
from rules.policy import DERIVED_PROFILE
from rules.yaml_lines import LoadedYaml, YamlError, load_yaml

# Read as an empty cell when the map has no `missing:` (CRM picklists' placeholders).
DEFAULT_MISSING = ("", "n/a", "na", "null", "none", "-", "--", "select", "(none)", "unknown")
MAX_COUNT = 1000  # events one count cell may stand for: more is a typo or another column's number
KEYS = ("id", "email", "created_at", "missing", "source", "profile", "events", "outcome", "delimiter",
        "encoding", "timezone")
KINDS = ("text", "number", "boolean", "list")


class MapInvalid(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def header_key(name: str) -> str:
    """A column's name as headers and maps are compared."""
    return " ".join(name.replace("\ufeff", "").split()).casefold()


def fold(cell: str) -> str:
    """A cell's value as value maps, `missing`, `won` and `lost` compare it."""
    return " ".join(cell.split()).casefold()


@dataclass(frozen=True)
class Column:
    name: str  # as the map writes it
    line: int

    @property
    def key(self) -> str:
        return header_key(self.name)


@dataclass(frozen=True)
class Valued:
    """A column read through a value map (folded cell -> value); a cell the map does not name is
    read as it is."""

    column: Column | None  # None: only the values (a JSON Lines import's sources)
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProfileField:
    name: str
    cell: Valued
    kind: str  # text | number | boolean | list


@dataclass(frozen=True)
class Counted:
    """`count:` a column saying how many events of `type` the lead took."""

    column: Column
    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Mapped:
    """`column:` whose values name the event the lead took (folded cell -> (type, data))."""

    column: Column
    values: dict[str, tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class Outcome:
    column: Column
    won: frozenset[str]
    lost: frozenset[str]
    reason: Column | None = None
    at: Column | None = None


@dataclass(frozen=True)
class CreatedAt:
    column: Column | None  # None: the run's --at
    day_first: bool = False
    format: str | None = None


@dataclass
class ImportMap:
    file: str
    id: Column | None = None
    email: Column | None = None
    created_at: CreatedAt = field(default_factory=lambda: CreatedAt(None))
    missing: frozenset[str] = frozenset(DEFAULT_MISSING)
    source: Valued | None = None
    profile: list[ProfileField] = field(default_factory=list)
    events: list[Counted | Mapped] = field(default_factory=list)
    outcome: Outcome | None = None
    delimiter: str | None = None
    encoding: str = "utf-8-sig"
    zone: tzinfo = timezone.utc

    def columns(self) -> list[Column]:
        """Every column the map names."""
        named = [self.id, self.email, self.created_at.column, self.source.column if self.source else None,
                 *(f.cell.column for f in self.profile), *(e.column for e in self.events)]
        if self.outcome is not None:
            named += [self.outcome.column, self.outcome.reason, self.outcome.at]
        return [c for c in named if c is not None]

    def check_header(self, header: list[str], export: str) -> None:
        """Every column the map names is in the export's header, once."""
        keys = [header_key(h) for h in header]
        problems = []
        for column in self.columns():
            n = keys.count(column.key)
            if n == 0:
                shown = ", ".join(repr(h.strip()) for h in header)
                problems.append(f"{self.file}:{column.line}: no column {column.name!r} in {export} "
                                f"(its columns: {shown})")
            elif n > 1:
                problems.append(f"{self.file}:{column.line}: {export} has {n} columns named "
                                f"{column.name!r}: which one is meant?")
        if problems:
            raise MapInvalid(problems)

    def check_events_only(self) -> None:
        """A JSON Lines export names its own fields: a map for it may say `missing` and the
        sources' `values`, no column."""
        named = self.columns()
        if named:
            raise MapInvalid([f"{self.file}:{c.line}: {c.name!r}: a JSON Lines export's events carry "
                              "their own fields; columns apply to CSV exports" for c in named])


@dataclass(frozen=True)
class Terms:
    """What the active policy allows: its declared profile (field -> kind; None: not declared, any
    field is text unless the map says its `type`) and the event types it knows (None: any)."""

    profile: dict[str, str] | None = None
    event_types: frozenset[str] | None = None
    policy: str = ""  # named in problems: `policy lead-lifecycle v1`


def load_map(path: str | Path, terms: Terms = Terms(), columns: bool = True) -> ImportMap:
    """The map file, checked; MapInvalid lists every problem as `file:line: message`. `columns`
    False: the map of a JSON Lines export, which names no lead column."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise MapInvalid([f"{name}:1: {err.strerror or err}"]) from None
    try:
        doc = load_yaml(raw)
    except YamlError as err:
        raise MapInvalid([f"{name}:{err.line}: {err.message}"]) from None
    reader = _Reader(doc, name, terms, columns)
    found = reader.read()
    if reader.problems:
        raise MapInvalid([f"{name}:{line}: {message}" for line, message in sorted(reader.problems)])
    return found


class _Reader:
    def __init__(self, doc: LoadedYaml, file: str, terms: Terms, columns: bool) -> None:
        self.doc, self.file, self.terms, self.columns = doc, file, terms, columns
        self.problems: list[tuple[int, str]] = []

    def add(self, path: tuple[Any, ...], message: str) -> None:
        self.problems.append((self.doc.line_of(path), message))

    def read(self) -> ImportMap:
        data = self.doc.data
        found = ImportMap(self.file)
        if not isinstance(data, dict):
            self.add((), "an import map is a YAML mapping (id:, email:, created_at:, source:, ...)")
            return found
        for key in data:
            if key not in KEYS:
                self.add((key,), f"unknown key {key!r} (known: {', '.join(KEYS)})")
        found.id = self.column(data, ("id",))
        found.email = self.column(data, ("email",))
        if self.columns and "id" not in data and "email" not in data:
            self.add((), "the map names the lead's `id:` column, its `email:` column, or both")
        found.created_at = self.created_at(data)
        found.missing = self.missing(data)
        found.source = self.source(data)
        found.profile = self.profile(data)
        found.events = self.events(data)
        found.outcome = self.outcome(data)
        found.delimiter = self.delimiter(data)
        found.encoding = self.encoding(data)
        found.zone = self.zone(data)
        return found

    # a column's name: `key: Name`
    def column(self, data: dict[str, Any], path: tuple[Any, ...], key: str | None = None) -> Column | None:
        key = key if key is not None else path[-1]
        if key not in data or data[key] is None:
            return None
        value = data[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            self.add(path, f"{key}: a column's name (as the export's header writes it)")
            return None
        return Column(value, self.doc.line_of(path))

    def created_at(self, data: dict[str, Any]) -> CreatedAt:
        raw = data.get("created_at")
        if not isinstance(raw, dict):
            return CreatedAt(self.column(data, ("created_at",)))
        path = ("created_at",)
        self.known(raw, path, ("column", "day_first", "format"))
        day_first = raw.get("day_first", False)
        if not isinstance(day_first, bool):
            self.add((*path, "day_first"), "day_first: true or false")
            day_first = False
        fmt = raw.get("format")
        if fmt is not None and (not isinstance(fmt, str) or "%" not in fmt):
            self.add((*path, "format"), "format: a strftime pattern such as '%d/%m/%Y %H:%M'")
            fmt = None
        return CreatedAt(self.column(raw, (*path, "column")), day_first, fmt)

    def missing(self, data: dict[str, Any]) -> frozenset[str]:
        raw = data.get("missing")
        if raw is None:
            return frozenset(DEFAULT_MISSING)
        if not isinstance(raw, list) or not all(isinstance(v, (str, int, float)) for v in raw):
            self.add(("missing",), 'missing: a list of the values read as an empty cell (["", Select, N/A])')
            return frozenset(DEFAULT_MISSING)
        return frozenset({"", *(fold(str(v)) for v in raw)})

    def valued(self, raw: Any, path: tuple[Any, ...], what: str, need_column: bool = True) -> Valued | None:
        """`Column` or `{column: Column, values: {cell: value}}`."""
        if not isinstance(raw, dict):
            column = self.column({path[-1]: raw}, path)
            return Valued(column) if column is not None else None
        self.known(raw, path, ("column", "values", "type"))
        column = self.column(raw, (*path, "column"))
        if column is None and need_column and "column" not in raw:
            self.add(path, f"{what}: needs its `column:`")
        values = raw.get("values") or {}
        if not isinstance(values, dict):
            self.add((*path, "values"), "values: a mapping of a cell's value to what it means")
            values = {}
        if column is None and (need_column or not values):
            return None
        return Valued(column, {fold(str(k)): v for k, v in values.items()})

    def source(self, data: dict[str, Any]) -> Valued | None:
        if data.get("source") is None:
            return None
        found = self.valued(data["source"], ("source",), "source", need_column=False)
        for cell, value in (found.values.items() if found else ()):
            if not isinstance(value, str) or not value.strip():
                self.add(("source", "values"), f"source value {cell!r}: maps to a source's name, a text")
        return found

    def profile(self, data: dict[str, Any]) -> list[ProfileField]:
        raw = data.get("profile")
        if raw is None:
            return []
        if not isinstance(raw, dict):
            self.add(("profile",), "profile: a mapping of the lead's profile field to its column")
            return []
        if len(raw) > MAX_PROFILE_FIELDS:
            self.add(("profile",), f"{len(raw)} profile fields; a lead holds at most {MAX_PROFILE_FIELDS}")
        out = []
        declared = self.terms.profile
        for name, spec in raw.items():
            path = ("profile", name)
            kind = spec.get("type") if isinstance(spec, dict) else None
            if not isinstance(name, str) or name in DERIVED_PROFILE or not name or len(name) > MAX_FIELD_NAME:
                self.add(path, f"{name!r}: a profile field's name (at most {MAX_FIELD_NAME} characters; "
                               "email and external_id are the map's `email:` and `id:`)")
                continue
            if declared is not None and name not in declared:
                self.add(path, f"{name!r} is not in {self.terms.policy}'s profile "
                               f"(declared: {', '.join(sorted(declared))})")
                continue
            if declared is not None and kind is not None and kind != declared[name]:
                self.add((*path, "type"), f"{name!r} is a {declared[name]} in {self.terms.policy}'s profile")
            if kind is not None and kind not in KINDS:
                self.add((*path, "type"), f"type: one of {', '.join(KINDS)}")
            cell = self.valued(spec, path, f"profile field {name!r}")
            if cell is not None:
                kind = declared[name] if declared is not None else kind or "text"
                out.append(ProfileField(name, cell, kind))
        return out

    def events(self, data: dict[str, Any]) -> list[Counted | Mapped]:
        raw = data.get("events")
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.add(("events",), "events: a list of `- {count: Column, type: event_type}` and "
                                  "`- {column: Column, values: {cell: event_type}}`")
            return []
        out: list[Counted | Mapped] = []
        for i, spec in enumerate(raw):
            path = ("events", i)
            if not isinstance(spec, dict) or ("count" in spec) == ("column" in spec):
                self.add(path, "an event column is `{count: Column, type: event_type}` or "
                               "`{column: Column, values: {cell: event_type}}`")
                continue
            if "count" in spec:
                self.known(spec, path, ("count", "type", "data"))
                column = self.column(spec, (*path, "count"))
                kind = self.event_type(spec.get("type"), (*path, "type"))
                data_ = self.data(spec.get("data"), (*path, "data"))
                if column is not None and kind is not None:
                    out.append(Counted(column, kind, data_))
                continue
            self.known(spec, path, ("column", "values"))
            column = self.column(spec, (*path, "column"))
            values = spec.get("values")
            if not isinstance(values, dict) or not values:
                self.add((*path, "values"), "values: a mapping of the column's values to event types")
                continue
            mapped: dict[str, tuple[str, dict[str, Any]]] = {}
            for cell, meant in values.items():
                where = (*path, "values", cell)
                if isinstance(meant, dict):
                    self.known(meant, where, ("type", "data"))
                    kind, data_ = self.event_type(meant.get("type"), (*where, "type")), \
                        self.data(meant.get("data"), (*where, "data"))
                else:
                    kind, data_ = self.event_type(meant, where), {}
                if kind is not None:
                    mapped[fold(str(cell))] = (kind, data_)
            if column is not None:
                out.append(Mapped(column, mapped))
        return out

    def event_type(self, kind: Any, path: tuple[Any, ...]) -> str | None:
        known = self.terms.event_types
        if not isinstance(kind, str) or not kind:
            self.add(path, "an event type (page_view, webinar_attended, ...)")
            return None
        if kind == OUTCOME:
            self.add(path, "outcomes come from the map's `outcome:`, not from an event column")
            return None
        if known is not None and kind not in known:
            self.add(path, f"unknown event type {kind!r}: {self.terms.policy} knows "
                           f"{', '.join(sorted(known))}")
            return None
        return kind

    def data(self, raw: Any, path: tuple[Any, ...]) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.add(path, "data: a mapping, the event's fields (path: /pricing)")
            return {}
        return raw

    def outcome(self, data: dict[str, Any]) -> Outcome | None:
        raw = data.get("outcome")
        if raw is None:
            return None
        path = ("outcome",)
        if not isinstance(raw, dict):
            self.add(path, "outcome: {column: Stage, won: [Closed Won], lost: [Closed Lost]}")
            return None
        self.known(raw, path, ("column", "won", "lost", "reason", "at"))
        column = self.column(raw, (*path, "column"))
        if column is None and "column" not in raw:
            self.add(path, "outcome: needs its `column:`")
        sides = {}
        for side in ("won", "lost"):
            values = raw.get(side)
            if isinstance(values, (str, int)):
                values = [values]
            if not isinstance(values, list) or not values:
                self.add((*path, side), f"{side}: the column's values that mean {side} ([Closed Won])")
                values = []
            sides[side] = frozenset(fold(str(v)) for v in values)
        for both in sorted(sides["won"] & sides["lost"]):
            self.add((*path, "lost"), f"{both!r} is both won and lost")
        if column is None:
            return None
        return Outcome(column, sides["won"], sides["lost"], self.column(raw, (*path, "reason")),
                       self.column(raw, (*path, "at")))

    def delimiter(self, data: dict[str, Any]) -> str | None:
        raw = data.get("delimiter")
        if raw is None:
            return None
        named = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
        raw = named.get(str(raw), raw)
        if not isinstance(raw, str) or len(raw) != 1 or raw in "\"\r\n":
            self.add(("delimiter",), "delimiter: one character (, ; | or tab); without it, it is detected")
            return None
        return raw

    def encoding(self, data: dict[str, Any]) -> str:
        raw = data.get("encoding")
        if raw is None:
            return "utf-8-sig"
        try:
            name = codecs.lookup(str(raw)).name
        except LookupError:
            self.add(("encoding",), f"unknown encoding {raw!r} (utf-8, cp1252, latin-1, utf-16)")
            return "utf-8-sig"
        return "utf-8-sig" if name == "utf-8" else name

    def zone(self, data: dict[str, Any]) -> tzinfo:
        raw = data.get("timezone")
        if raw is None:
            return timezone.utc
        try:
            return ZoneInfo(str(raw))
        except (ZoneInfoNotFoundError, ValueError):
            self.add(("timezone",), f"unknown time zone {raw!r} (UTC, Europe/Berlin, America/New_York)")
            return timezone.utc

    def known(self, raw: dict[str, Any], path: tuple[Any, ...], keys: tuple[str, ...]) -> None:
        for key in raw:
            if key not in keys:
                self.add((*path, key), f"unknown key {key!r} here (known: {', '.join(keys)})")
