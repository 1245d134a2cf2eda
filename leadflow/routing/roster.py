"""The roster: sales reps, the queues they work, how many open tasks each takes at once
(`capacity`, also their share of the queue's round robin) and when they are away. Written as
YAML beside the policies (`policies/roster.yaml`) or changed through the API and pages."""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rules.validate import Problem
from rules.yaml_lines import YamlError, load_yaml

NAME = r"^[a-z][a-z0-9_-]*$"
FILE_NAME = "roster.yaml"  # beside the policy files; never read as a policy


def is_roster(path: Any) -> bool:
    from pathlib import Path

    return Path(path).name == FILE_NAME


class RosterInvalid(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def moment(value: Any) -> datetime | None:
    """A date is its day's start (UTC); a time without a zone is UTC."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=timezone.utc)
    text = str(value).strip()
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class Away(BaseModel):
    """Away from `from` (omitted: now) until `until` (back then; omitted: until changed)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: datetime | None = Field(default=None, alias="from")
    until: datetime | None = None

    @field_validator("from_", "until", mode="before")
    @classmethod
    def _moment(cls, value: Any) -> datetime | None:
        try:
            return moment(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a date or time (write 2026-12-24 or 2026-12-24T09:00Z)"
                             ) from None

    @model_validator(mode="after")
    def _order(self) -> Away:
        if self.from_ and self.until and self.until <= self.from_:
            raise ValueError("`until` must come after `from`")
        return self

    def covers(self, at: datetime) -> bool:
        return (self.from_ is None or self.from_ <= at) and (self.until is None or at < self.until)


class Rep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=NAME, max_length=200)
    name: str = Field(default="", max_length=320)
    email: str = Field(default="", max_length=320)
    queues: list[str] = Field(min_length=1)
    capacity: int = Field(default=1, ge=0, le=10_000)
    away: Away | None = None

    @field_validator("queues")
    @classmethod
    def _queue_names(cls, value: list[str]) -> list[str]:
        import re

        for queue in value:
            if not re.match(NAME, queue):
                raise ValueError(f"{queue!r} is not a queue name (lower-case letters, digits, - and _)")
        return list(dict.fromkeys(value))

    def away_at(self, at: datetime) -> bool:
        return self.away is not None and self.away.covers(at)


class Roster(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reps: list[Rep] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Roster:
        seen: set[str] = set()
        for rep in self.reps:
            if rep.id in seen:
                raise ValueError(f"rep {rep.id!r} is listed twice")
            seen.add(rep.id)
        return self

    def rep(self, rep_id: str) -> Rep | None:
        return next((r for r in self.reps if r.id == rep_id), None)

    def in_queue(self, queue: str) -> list[Rep]:
        return [r for r in self.reps if queue in r.queues]

    def queues(self) -> list[str]:
        return sorted({q for r in self.reps for q in r.queues})


def parse_roster(raw: bytes | str, file: str) -> Roster:
    """The roster in a YAML text, or RosterInvalid with each problem at its file and line."""
    try:
        doc = load_yaml(raw if isinstance(raw, bytes) else raw.encode("utf-8"))
    except YamlError as err:
        raise RosterInvalid([Problem(file, err.line, "roster", err.message)]) from None
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise RosterInvalid([Problem(file, 1, "roster", "a roster is a mapping with `reps:`")])
    try:
        return Roster.model_validate(data)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            who = "roster"
            if len(loc) > 1 and loc[0] == "reps" and isinstance(loc[1], int):
                reps = data.get("reps") or []
                item = reps[loc[1]] if loc[1] < len(reps) else {}
                who = f"rep {item.get('id', loc[1])!r}" if isinstance(item, dict) else f"reps[{loc[1]}]"
            where = ".".join(str(p) for p in loc[2:] if p != "from_") or ".".join(str(p) for p in loc)
            message = e["msg"].removeprefix("Value error, ")
            problems.append(Problem(file, doc.line_of(tuple("from" if p == "from_" else p for p in loc)),
                                    who, f"{where}: {message}" if where else message))
        raise RosterInvalid(problems) from None


def dump_roster(roster: Roster) -> str:
    """The roster as YAML, as a person would write it."""
    import yaml

    reps = []
    for rep in roster.reps:
        item: dict[str, Any] = {"id": rep.id}
        if rep.name:
            item["name"] = rep.name
        if rep.email:
            item["email"] = rep.email
        item["queues"] = rep.queues
        item["capacity"] = rep.capacity
        if rep.away is not None:
            ends = (("from", rep.away.from_), ("until", rep.away.until))
            item["away"] = {k: v.isoformat().replace("+00:00", "Z") for k, v in ends if v is not None}
        reps.append(item)
    return yaml.safe_dump({"reps": reps}, sort_keys=False, allow_unicode=True, default_flow_style=None)
