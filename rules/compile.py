"""Policy -> one durable-rules ruleset per version, plus the tables the evaluator needs.

Every rule becomes a single-pattern rule (no joins, no state conditions: the patterns that
crash the engine) over one fact, the lead snapshot. The snapshot carries a phase tag `k`, so
scoring rules and stage rules share one ruleset and the engine's own session-state object
never matches anything.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any, Literal, cast

from rules.conditions import (
    TIME_FIELDS,
    All,
    Cond,
    CountSpec,
    Test,
    field_key,
    fields_of,
    parse_when,
    state_sources,
)
from rules.durations import parse_duration
from rules.engine import register
from rules.index_plan import PhasePlan, PlanRule, plan_phase
from rules.models import BUILTIN_EVENTS, Firing
from rules.policy import Effects, Policy, Send
from rules.projection import Projection, compile_projection
from rules.routing import Route
from rules.scoring import SCORE_DIGITS
from rules.validate import LoadedPolicy

Kind = Literal["fit", "engagement", "stage"]
# a fit: its score, BANT letters, and the firings of the fit rules matched
FitResult = tuple[float, tuple[str, ...], list[Firing]]
ROUNDING = 10.0 ** -SCORE_DIGITS  # the smallest step of a score as rules read it
HANDOFF_PRIORITY = 1000  # sales' word on a hand-off outranks every policy rule


@dataclass(frozen=True)
class CompiledRule:
    engine_name: str
    id: str
    kind: Kind
    rank: int  # lower fires first: priority desc, then file order
    priority: int
    cond: Cond
    fields: tuple[tuple[str, str], ...]  # (field as written, fact path) it matched on
    description: str = ""
    where: tuple[Any, ...] = ()  # its conditions in the policy file, for problems
    effects: Effects | None = None
    points: float = 0.0
    bant: str | None = None
    signal: Literal["interest", "intent"] = "interest"
    half_life: float = 0.0
    cap: float | None = None

    @functools.cached_property
    def summary(self) -> dict[str, Any]:
        """What a scoring rule's firing says it did (the story shows it)."""
        return {"points": self.points, **({"bant": self.bant} if self.bant else {}),
                **({"signal": self.signal} if self.kind == "engagement" else {})}


@dataclass(frozen=True)
class CompiledTrack:
    name: str
    steps: tuple[tuple[float, Send], ...]  # (after, content id or A/B variants)
    on_exhausted: Effects | None


@dataclass(frozen=True)
class Watch:
    """A level a stage rule waits for: time in a state, inactivity, or a score decaying below."""

    field: str
    value: float
    states: frozenset[str] | None


@dataclass
class CompiledPolicy:
    policy: Policy
    file: str
    source: bytes  # the file's bytes: evaluator processes compile the same version from them
    sha: str
    ruleset: str
    # one engine ruleset per phase (fit, engagement, stage), named `<ruleset>/<phase>`: the engine
    # looks for each next matched rule by scanning every rule of its ruleset
    definitions: dict[str, dict[str, Any]]
    plans: dict[str, PhasePlan]  # per phase: how its facts and rules are laid out
    constants: frozenset[float]  # the numbers conditions compare with (see rules.engine_json)
    rules: dict[str, CompiledRule]
    counts: tuple[CountSpec, ...]
    watches: tuple[Watch, ...]
    caps: dict[str, float | None]
    history_window: float
    counted: frozenset[str]  # event types the counts need; "any" means all
    event_types: frozenset[str]
    tracks: dict[str, CompiledTrack]
    handoff_queue: str | None
    handoff_sla: float | None
    escalate_to: str | None
    max_chain: int
    fit_cap: float
    engagement_cap: float
    final_states: frozenset[str] = frozenset()
    routing: tuple[Route, ...] = ()
    breach_steps: tuple[str, ...] = ()  # per SLA breach: `reassign` or `escalate:<queue>`

    @functools.cached_property
    def name(self) -> str:
        return self.policy.policy

    @functools.cached_property
    def projections(self) -> dict[str, Projection]:
        """Per phase, its fact's generated builders (rules.projection), made at first use."""
        return {phase: compile_projection(plan, self.constants) for phase, plan in self.plans.items()}

    @functools.cached_property
    def handles(self) -> dict[str, int | None]:
        """Per phase, its engine ruleset in this process (None: the phase has no rules)."""
        return {phase: register(f"{self.ruleset}/{phase}", definition, self.constants)
                if definition else None for phase, definition in self.definitions.items()}

    @functools.cached_property
    def fit_memo(self) -> dict[tuple[str, ...], FitResult]:
        """rules.evaluate's fit results per fit key and rules matched (see rules.evaluate._fit)."""
        return {}

    @functools.cached_property
    def fit_keys(self) -> dict[tuple[Any, ...], str]:
        """rules.evaluate's fit key per fit values (see rules.evaluate._fit_key)."""
        return {}

    @functools.cached_property
    def _watching(self) -> dict[str, tuple[Watch, ...]]:
        states = {*self.policy.states, *self.final_states}
        return {state: tuple(w for w in self.watches if w.states is None or state in w.states)
                for state in states}

    def watching(self, state: str) -> tuple[Watch, ...]:
        """The watches a lead in `state` has, in order (a state the policy no longer lists:
        those of every state)."""
        known = self._watching.get(state)
        if known is None:
            return tuple(w for w in self.watches if w.states is None or state in w.states)
        return known

    def __getstate__(self) -> dict[str, Any]:
        # generated code and engine handles belong to one process: another makes its own
        state = dict(self.__dict__)
        state.pop("projections", None)
        state.pop("handles", None)
        for memo in ("fit_memo", "fit_keys", "_watching"):
            state.pop(memo, None)
        return state

    @functools.cached_property
    def version(self) -> int:
        return self.policy.version


def compile_policy(loaded: LoadedPolicy) -> CompiledPolicy:
    if loaded.compiled is not None:  # validation compiled it already
        return cast(CompiledPolicy, loaded.compiled)
    p = loaded.policy
    sha = hashlib.sha256(loaded.raw).hexdigest()
    ruleset = f"{p.policy}@v{p.version}#{sha[:8]}"
    lists = p.lists
    default_half_life = parse_duration(p.scoring.decay.half_life) if p.scoring.decay else 0.0
    compiled: list[CompiledRule] = []

    for i, r in enumerate(p.scoring.fit):
        cond = parse_when(r.when, lists, ("scoring", "fit", i, "when"))
        compiled.append(_rule(f"f{i}", r.id, "fit", 0, i, cond, r.description,
                              where=("scoring", "fit", i, "when"), points=r.points, bant=r.bant))
    for i, er in enumerate(p.scoring.engagement):
        on = Test("event.type", "event.type", "in", er.event_types, ("scoring", "engagement", i))
        cond = _and(on, parse_when(er.when, lists, ("scoring", "engagement", i, "when")) if er.when else None)
        if er.decay == "none":
            half_life = 0.0
        else:
            half_life = parse_duration(er.decay.half_life) if er.decay else default_half_life
        compiled.append(_rule(f"e{i}", er.id, "engagement", 0, len(p.scoring.fit) + i, cond, er.description,
                              where=("scoring", "engagement", i), points=er.points, signal=er.signal,
                              half_life=half_life, cap=er.cap))
    stage: list[tuple[int, int, str, str, Cond, Effects, str, tuple[Any, ...]]] = []
    for i, sr in enumerate(p.rules):
        cond = parse_when(sr.when, lists, ("rules", i, "when"))
        stage.append((sr.priority, i, f"r{i}", sr.id, cond, sr.then, sr.description, ("rules", i, "when")))
    if p.handoff:
        for j, (event, key) in enumerate((("sales_accept", "on_accept"), ("sales_reject", "on_reject"))):
            effects = getattr(p.handoff, key)
            if effects is not None:
                # sales' answer only counts while a hand-off is open
                cond = All((Test("event.type", "event.type", "eq", event, ("handoff", key)),
                            Test("handoff_open", "handoff_open", "eq", True, ("handoff", key))))
                stage.append((HANDOFF_PRIORITY, -2 + j, f"h{j}", f"handoff.{key}", cond, effects,
                              f"sales {event.split('_')[1]}ed the hand-off", ("handoff", key)))
    stage.sort(key=lambda s: (-s[0], s[1]))
    for rank, (priority, _, engine_name, rule_id, cond, effects, description, where) in enumerate(stage):
        compiled.append(_rule(engine_name, rule_id, "stage", priority, rank, cond, description,
                              where=where, effects=effects))

    plans = plan_phases(compiled, loaded)
    by_name = {rule.engine_name: rule for rule in compiled}
    definitions: dict[str, dict[str, Any]] = {}
    for phase, shaped in plans.items():
        definitions[phase] = {
            name: {"all": [{"m": pattern}], "pri": by_name[shaped.aliases.get(name, name)].rank + 1}
            for name, pattern in shaped.patterns.items()}

    counts: dict[str, CountSpec] = {}
    watches: set[Watch] = set()
    for rule in compiled:
        sources = state_sources(rule.cond)[0]
        for t in fields_of(rule.cond):
            _, spec = field_key(t.field, t.where)
            if spec:
                counts[t.key] = spec
            if rule.kind != "stage":
                continue
            if t.field in TIME_FIELDS and t.op in ("gt", "gte"):
                watches.add(Watch(t.field, float(t.value) + (1.0 if t.op == "gt" else 0.0), sources))
            score = t.field.removeprefix("score.")
            if score in ("interest", "intent", "engagement", "total") and t.op in ("lt", "lte"):
                # rules read scores rounded to cents (rules.evaluate), so the rule holds once the
                # exact score is below the level half a cent under the rounded one: a check aimed
                # at the exact value came a hair early, saw 4.00, and asked for no other
                level = float(t.value) + (ROUNDING / 2 - 1e-9 if t.op == "lte" else -ROUNDING / 2)
                watches.add(Watch(score, level, sources))
    tracks = {
        name: CompiledTrack(name, tuple((parse_duration(s.after), s.send) for s in t.steps), t.on_exhausted)
        for name, t in p.nurture.tracks.items()
    }
    windows = [c.window for c in counts.values()]
    return CompiledPolicy(
        policy=p,
        file=loaded.file,
        source=loaded.raw,
        sha=sha,
        ruleset=ruleset,
        definitions=definitions,
        plans=plans,
        constants=frozenset(_constants(compiled)),
        rules={r.engine_name: r for r in compiled},
        counts=tuple(counts.values()),
        watches=tuple(sorted(watches, key=lambda w: (w.field, w.value))),
        caps={r.id: r.cap for r in compiled if r.kind == "engagement"},
        history_window=max(windows, default=0.0),
        counted=frozenset(c.type for c in counts.values()),
        event_types=frozenset(BUILTIN_EVENTS | set(p.events)),
        tracks=tracks,
        handoff_queue=p.handoff.queue if p.handoff else None,
        handoff_sla=parse_duration(p.handoff.sla) if p.handoff else None,
        escalate_to=p.handoff.on_breach.escalates_to() if p.handoff and p.handoff.on_breach else None,
        max_chain=p.limits.max_chain,
        fit_cap=p.scoring.fit_cap,
        engagement_cap=p.scoring.engagement_cap,
        final_states=frozenset(p.final_states),
        routing=tuple(Route(r.id, parse_when(r.when, lists, ("routing", i, "when")) if r.when else None,
                            r.queue) for i, r in enumerate(p.routing)),
        breach_steps=p.handoff.on_breach.steps() if p.handoff and p.handoff.on_breach else (),
    )


def _phase(rule: CompiledRule) -> str:
    return rule.kind


def plan_phases(compiled: list[CompiledRule], loaded: LoadedPolicy) -> dict[str, PhasePlan]:
    """Lay each phase out for the engine (rules.index_plan); raises LimitError at the rule's place."""
    by_phase: dict[str, list[PlanRule]] = {"fit": [], "engagement": [], "stage": []}
    for rule in compiled:
        by_phase[_phase(rule)].append(PlanRule(rule.engine_name, rule.cond, rule.where))
    return {phase: plan_phase(phase, rules) for phase, rules in by_phase.items()}


def _constants(compiled: list[CompiledRule]) -> list[float]:
    out = []
    for rule in compiled:
        for t in fields_of(rule.cond):
            for v in t.value if isinstance(t.value, list) else [t.value]:
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out.append(float(v))
    return out


def _and(first: Cond, second: Cond | None) -> Cond:
    if second is None:
        return first
    rest = second.items if isinstance(second, All) else (second,)
    return All((first, *rest))


def _rule(engine_name: str, rule_id: str, kind: Kind, priority: int, rank: int, cond: Cond,
          description: str, **extra: Any) -> CompiledRule:
    seen: dict[str, str] = {}
    for t in fields_of(cond):
        seen.setdefault(t.field, t.key)
    return CompiledRule(engine_name, rule_id, kind, rank, priority, cond,
                        tuple(seen.items()), description, **extra)


def load_compiled(path: str) -> CompiledPolicy:
    """Validate and compile a policy file; raises PolicyInvalid with every problem found."""
    from rules.validate import load_policy_file

    return compile_policy(load_policy_file(path))
