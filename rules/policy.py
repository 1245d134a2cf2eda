"""The policy file as typed models. Built only from documents that passed the JSON Schema."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Scalar = str | int | float | bool | None

# Profile fields every lead may have whatever the policy declares: who it is, and what the
# evaluator derives (rules.evaluate).
DERIVED_PROFILE = frozenset({"email", "external_id", "email_domain"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Owners(_Model):
    marketing: list[str]
    sales: list[str]


class Decay(_Model):
    half_life: str


class HandoffSpec(_Model):
    queue: str | None = None
    sla: str | None = None


class Variants(_Model):
    """An A/B test of content: each lead gets one of these content ids, in these shares (whole
    percentages adding up to 100, one per variant, in order); which one: rules.variants."""

    variants: list[str]
    split: list[int]


Send = str | Variants  # one content id, or an A/B test of several


class Effects(_Model):
    transition: str | None = None
    set: dict[str, Scalar] = Field(default_factory=dict)
    track: str | None = None
    stop_track: bool = False
    send: Send | None = None
    handoff: bool | HandoffSpec | None = None
    disqualify: str | None = None
    schedule: str | None = None
    reason: str | None = None


class FitRule(_Model):
    id: str
    description: str = ""
    bant: Literal["budget", "authority", "need", "timeline"] | None = None
    when: dict[str, Any]
    points: float


class EngagementRule(_Model):
    id: str
    description: str = ""
    on: str | list[str]
    when: dict[str, Any] = Field(default_factory=dict)
    points: float
    signal: Literal["interest", "intent"]
    decay: Decay | Literal["none"] | None = None
    cap: float | None = None

    @property
    def event_types(self) -> list[str]:
        return [self.on] if isinstance(self.on, str) else list(self.on)


class Scoring(_Model):
    fit_cap: float = 100
    engagement_cap: float = 100
    decay: Decay | None = None
    fit: list[FitRule] = Field(default_factory=list)
    engagement: list[EngagementRule] = Field(default_factory=list)


class StageRule(_Model):
    id: str
    description: str = ""
    priority: int = 0
    when: dict[str, Any]
    then: Effects


class TrackStep(_Model):
    after: str
    send: Send


class Track(_Model):
    description: str = ""
    steps: list[TrackStep]
    on_exhausted: Effects | None = None


class Nurture(_Model):
    tracks: dict[str, Track] = Field(default_factory=dict)
    # a boolean profile field that must be true before marketing e-mail goes out (None: no consent
    # asked); a send without it is withheld and recorded, never sent
    requires_consent: str | None = None


class Delivery(_Model):
    """Manners for marketing e-mail (rules.manners): how many a lead gets per local day and per
    rolling week, the hours of its own night when none goes out, and where its time zone comes
    from. Mail the person asked for (`transactional` content) and the service's own mail (double
    opt-in, hand-offs to reps) keep no manners: they are never held."""

    max_per_day: int | None = None  # in the lead's local calendar day
    max_per_week: int | None = None  # in any 7 days (168 hours) in a row
    # a send over a cap: wait for the next slot within the caps, or not go out at all
    when_capped: Literal["wait", "skip"] = "wait"
    quiet_hours: str | None = None  # "HH:MM-HH:MM", local; may wrap midnight ("20:00-08:00")
    timezone_field: str | None = None  # a profile field holding an IANA zone ("America/New_York")
    country_field: str | None = "country"  # else an ISO 3166 alpha-2 country in this field
    timezone: str = "UTC"  # else this zone
    transactional: list[str] = Field(default_factory=list)  # content ids exempt from the above


class Breach(_Model):
    """What an SLA breach does: escalate to a queue, or first pass the task to the next free rep
    of its queue and `then` (at the next breach) do what that says."""

    escalate_to: str | None = None
    reassign: Literal["next"] | None = None
    then: Breach | None = None

    def steps(self) -> tuple[str, ...]:
        """One step per breach, in order: `reassign` or `escalate:<queue>`."""
        here = ("reassign",) if self.reassign else (f"escalate:{self.escalate_to}",)
        return here + (self.then.steps() if self.then is not None else ())

    def escalates_to(self) -> str | None:
        if self.escalate_to:
            return self.escalate_to
        return self.then.escalates_to() if self.then is not None else None


class RoutingRule(_Model):
    """Which queue a hand-off goes to: the first rule whose `when` holds (no `when`: always)."""

    id: str
    description: str = ""
    when: dict[str, Any] | None = None
    queue: str


class Handoff(_Model):
    queue: str
    sla: str
    on_accept: Effects | None = None
    on_reject: Effects | None = None
    on_breach: Breach | None = None


class Rollout(_Model):
    # stay: leads keep the version they were captured with; move: running leads on an older
    # version of this policy switch to this one at their next evaluation
    running_leads: Literal["stay", "move"] = "stay"


class Limits(_Model):
    max_chain: int = 25


class PolicyTest(_Model):
    name: str
    lead: dict[str, Any] = Field(default_factory=dict)
    events: list[dict[str, Any]]
    until: str | None = None
    expect: dict[str, Any]


class Policy(_Model):
    policy: str
    version: int
    description: str = ""
    owners: Owners
    states: list[str]
    initial: str = "captured"
    # states a lead does not leave: its workflow completes once it has stayed in one for the
    # worker's LEADFLOW_FINAL_RETENTION, and a later event starts a new run that knows the story
    final_states: list[str] = Field(default_factory=list)
    events: list[str] = Field(default_factory=list)
    lists: dict[str, list[Any]] = Field(default_factory=dict)
    content: list[str] = Field(default_factory=list)
    # the topics of its marketing e-mail (a template's `topic:`), each of which a person may keep
    # or drop on the preference page; when listed, every template it sends names one of them
    # (its transactional content aside)
    topics: list[str] = Field(default_factory=list)
    # what a lead's profile may hold (field -> text | number | boolean | list); when declared,
    # rules and content templates may read only these (plus the derived fields in DERIVED_PROFILE)
    profile: dict[str, Literal["text", "number", "boolean", "list"]] | None = None
    limits: Limits = Field(default_factory=Limits)
    rollout: Rollout = Field(default_factory=Rollout)
    scoring: Scoring = Field(default_factory=Scoring)
    rules: list[StageRule]
    nurture: Nurture = Field(default_factory=Nurture)
    handoff: Handoff | None = None
    routing: list[RoutingRule] = Field(default_factory=list)
    delivery: Delivery | None = None  # None: e-mail goes out whenever a rule sends it
    tests: list[PolicyTest] = Field(default_factory=list)
