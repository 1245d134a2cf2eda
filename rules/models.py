"""Typed shapes that cross the core's edges: events in, lead state and decisions out.

Times inside the lead state are epoch seconds (floats): the evaluator does arithmetic on them
on every event, and they serialise the same way through Temporal's pydantic converter.
The small records built on every evaluation (contributions, firings, actions, story lines)
are slotted dataclasses: pydantic validates and serialises them inside LeadState and Decision
all the same, and building one costs a fraction of a BaseModel.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from rules.policy import Delivery

# Events the workflow itself produces; they are never engagement and never count as activity.
SYSTEM_EVENTS = frozenset({"check", "sales_accept", "sales_reject", "sla_breach", "identify"})

# What a CRM says became of a lead (`data.outcome`: won or lost, with its `reason`): kept in its
# history for the funnel and `policy suggest` to learn from, never evaluated by a policy.
OUTCOME = "outcome"
OUTCOMES = ("won", "lost")

BUILTIN_EVENTS = frozenset(
    {
        "signup",
        "form_submit",
        "page_view",
        "email_open",
        "email_click",
        "email_bounce",
        "unsubscribe",
        "complaint",  # an abuse report (ARF) about its e-mail: leadflow.delivery.inbound
        "preference_changed",  # the person kept and dropped topics of marketing e-mail
        "content_download",
        "webinar_attended",
        "demo_request",
        "contact_sales",
        "meeting_booked",
        "reply",
    }
    | SYSTEM_EVENTS
)


class LeadRef(BaseModel):
    """Who the event is about, plus any profile facts it carries (role, budget, ...)."""

    model_config = ConfigDict(extra="allow")
    email: str | None = Field(default=None, max_length=320)
    external_id: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("email")
    @classmethod
    def _email_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if value.count("@") != 1 or value.startswith("@") or value.endswith("@"):
            raise ValueError(f"not an e-mail address: {value!r}")
        return value

    @model_validator(mode="after")
    def _finite_profile(self, info: ValidationInfo) -> LeadRef:
        extra = self.model_extra or {}
        _require_finite(extra, "")
        if not _uncapped(info):
            _require_small_profile(extra)
        return self

    def profile(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


MAX_TEXT = 10_000  # characters of one text in an event's lead or data
# What one lead may carry for months, through every continue-as-new (workflows.lead keeps the
# carried state well under Temporal's 2 MB payload limit from these): profile fields besides
# email and external_id (per event, and per lead: the lead refuses an event that would pass it),
# the length of a field's name, and of its value (a text's characters, else its JSON's)
MAX_PROFILE_FIELDS = 50
MAX_FIELD_NAME = 64
MAX_PROFILE_VALUE = 1_000
MAX_EVENT_BYTES = 32 * 1024  # one event, as compact JSON in UTF-8
# the validation errors of these caps (events taken before the caps existed are read without
# them when a lead's history is replayed: see `_uncapped`)
SIZE_ERRORS = frozenset({"profile_too_large", "profile_field_too_long", "event_too_large"})


def _uncapped(info: ValidationInfo) -> bool:
    """Validation asked to leave the size caps out (`context={"uncapped": True}`): only the lead
    workflow does, replaying a history from before them."""
    return isinstance(info.context, dict) and bool(info.context.get("uncapped"))


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def _require_small_profile(extra: dict[str, Any]) -> None:
    if len(extra) > MAX_PROFILE_FIELDS:
        raise PydanticCustomError(
            "profile_too_large", "{n} profile fields; at most {most} besides email and external_id",
            {"n": len(extra), "most": MAX_PROFILE_FIELDS})
    for key, value in extra.items():
        if len(key) > MAX_FIELD_NAME:
            raise PydanticCustomError(
                "profile_field_too_long", "a profile field's name is {n} characters ({key}); at most {most}",
                {"key": repr(key[:20] + "…"), "n": len(key), "most": MAX_FIELD_NAME})
        n = len(value) if isinstance(value, str) else _json_size(value)
        if n > MAX_PROFILE_VALUE:
            what = "a text" if isinstance(value, str) else "a value"
            raise PydanticCustomError(
                "profile_field_too_long", "profile field {key} is {what} of {n} characters; at most {most}",
                {"key": repr(key), "what": what, "n": n, "most": MAX_PROFILE_VALUE})


def _require_finite(value: Any, where: str) -> None:
    """NaN and infinities are not JSON numbers (Python's reader takes them anyway) and no
    condition can compare them; a text longer than MAX_TEXT is no profile field or page path but
    a mistake that would travel with the lead for months: the event is refused, saying where,
    before it reaches a lead."""
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError(
            "finite_number", "{where} is {value}: only finite numbers can be compared",
            {"where": where or "value", "value": repr(value)})
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise PydanticCustomError(
            "text_too_long", "{where} is a text of {n} characters; at most {most}",
            {"where": where or "value", "n": len(value), "most": MAX_TEXT})
    if isinstance(value, dict):
        for key, item in value.items():
            _require_finite(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _require_finite(item, f"{where}[{i}]")


class Event(BaseModel):
    """The intake contract (rules/schemas/event.schema.json says the same in JSON Schema)."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, min_length=1, max_length=200)
    type: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    at: datetime | None = None
    lead: LeadRef = Field(default_factory=LeadRef)
    data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _small(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and not _uncapped(info):
            size = _json_size(data)
            if size > MAX_EVENT_BYTES:
                raise PydanticCustomError(
                    "event_too_large", "the event is {n} bytes as JSON; at most {most}",
                    {"n": size, "most": MAX_EVENT_BYTES})
        return data

    @field_validator("data")
    @classmethod
    def _finite_data(cls, value: dict[str, Any]) -> dict[str, Any]:
        _require_finite(value, "")
        return value

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


@dataclass(slots=True)
class Contribution:
    """One engagement scoring: decays from `at` with `half_life` seconds (0 = never)."""

    rule: str
    at: float
    points: float
    half_life: float
    signal: Literal["interest", "intent"]


@dataclass(slots=True)
class TrackState:
    name: str
    started: float
    step: int = 0
    # The id of the event that started the track. Step keys name it rather than `started`: a
    # workflow task retried after a worker crash evaluates the same event at a later moment,
    # and the steps it sends again must carry the same keys. Empty in leads from before it.
    origin: str = ""

    def ref(self) -> str:
        return self.origin or f"{self.started:.3f}"


@dataclass(slots=True)
class StoryEntry:
    """One line of a lead's story: a transition or a rejected event, and why."""

    at: str
    event_id: str | None
    event_type: str
    from_state: str
    to_state: str
    rule: str | None
    policy: str
    version: int
    why: str
    matched: dict[str, Any] = dc_field(default_factory=dict)


class LeadState(BaseModel):
    key: str = ""
    policy: str
    version: int
    state: str
    state_since: float
    created: float
    profile: dict[str, Any] = Field(default_factory=dict)
    facts: dict[str, Any] = Field(default_factory=dict)
    fit: float = 0.0
    bant: list[str] = Field(default_factory=list)
    # the fit rules (engine names) that matched the values in `fit_key` (a digest, with the
    # policy version): fit is asked of the engine again only when those values change
    fit_key: str = ""
    fit_rules: list[str] = Field(default_factory=list)
    contributions: list[Contribution] = Field(default_factory=list)
    # (type, minute bucket start, n) of the event types the policy counts, within its windows
    history: list[tuple[str, float, int]] = Field(default_factory=list)
    recent: list[tuple[str, float]] = Field(default_factory=list)  # the last few, for sales
    last_activity: float | None = None
    track: TrackState | None = None
    handoff_open: bool = False
    wakeups: list[float] = Field(default_factory=list)
    # "unsubscribed" or "bounced": no track runs and no marketing e-mail goes out, whatever a
    # policy (of any later version) says; see rules.evaluate.MAIL_STOPS
    mail_stop: str | None = None


class Scores(BaseModel):
    fit: float = 0.0
    interest: float = 0.0
    intent: float = 0.0
    engagement: float = 0.0
    total: float = 0.0
    bant: int = 0


@dataclass(slots=True)
class Action:
    """A side effect the workflow should carry out; `key` makes it idempotent."""

    kind: Literal[
        "start_track", "stop_track", "send", "create_handoff", "disqualify", "escalate"
    ]
    key: str
    track: str | None = None
    content: str | None = None
    queue: str | None = None
    sla_seconds: float | None = None
    escalate_to: str | None = None
    reason: str | None = None
    # a send that must not go out, and why (the lead unsubscribed, bounced, gave no consent);
    # it is recorded in the delivery ledger, not sent
    withheld: str | None = None
    route: str | None = None  # a hand-off's: the routing rule that chose its queue
    # a hand-off's: what each SLA breach does, in order (`reassign`, `escalate:<queue>`)
    breach_steps: list[str] = dc_field(default_factory=list)
    # a marketing send's: the policy's delivery manners it keeps (rules.manners); None for mail
    # that keeps none (no `delivery:`, transactional content, a withheld send)
    manners: Delivery | None = None
    # a send of an A/B test: the test's name (rules.variants.AbStep.name); `content` is the
    # variant this lead got
    ab_test: str | None = None


@dataclass(slots=True)
class Firing:
    rule: str
    kind: Literal["fit", "engagement", "stage", "track", "handoff"]
    priority: int = 0
    matched: dict[str, Any] = dc_field(default_factory=dict)
    effects: dict[str, Any] = dc_field(default_factory=dict)
    changed: bool = True


_M = TypeVar("_M", bound=BaseModel)


def built(cls: type[_M], values: dict[str, Any]) -> _M:
    """`cls.model_construct(**values)` when `values` holds every field, as the evaluator's hot
    path does: pydantic's own walks every field for defaults and aliases, about 15 us a
    Decision, a good share of one evaluation. tests/unit/test_evaluator.py holds the two equal."""
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", values)
    object.__setattr__(model, "__pydantic_fields_set__", set(values))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


class Decided(BaseModel):
    """What a Decision says of the event, without the lead it leaves (and whether that lead is
    final): activities.evaluation sends a lead workflow this with the lead's changes
    (rules.lead_delta), so the workflow's history does not hold the whole lead per event."""

    policy: str
    version: int
    ruleset: str
    event_id: str | None
    event_type: str
    at: datetime
    rejected: str | None = None
    state_before: str
    state: str
    scores: Scores
    fact_changes: dict[str, Any] = Field(default_factory=dict)
    actions: list[Action] = Field(default_factory=list)
    fired: list[Firing] = Field(default_factory=list)
    next_check_at: datetime | None = None
    story: list[StoryEntry] = Field(default_factory=list)  # this evaluation's new lines


class Decision(Decided):
    lead: LeadState
    final: bool = False  # the lead is in one of its policy's final states
