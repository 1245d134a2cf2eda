"""Refuse a bad policy file with `file:line: rule-id: message` lines, never a traceback.

Two passes: the JSON Schema (shape), then semantic checks the schema cannot express (states,
tracks and content that exist, unique ids, reachability, unguarded cycles, impossible tests).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path as FsPath
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from pydantic import ValidationError as PydanticError

from rules.conditions import (
    All,
    Any_,
    Cond,
    ConditionError,
    Test,
    fields_of,
    impossible,
    parse_when,
    state_sources,
)
from rules.durations import parse_duration
from rules.manners import zone
from rules.models import BUILTIN_EVENTS, SYSTEM_EVENTS
from rules.policy import DERIVED_PROFILE, Effects, Policy, Send
from rules.routing import ROUTING_FIELDS
from rules.variants import SHARES
from rules.yaml_lines import LoadedYaml, Path, YamlError, load_yaml

REQUIRED_STATES = ("captured", "scored", "nurturing", "sales-ready", "derailed")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}: {self.message}"


@dataclass(frozen=True)
class PolicyWarning(Problem):
    """Worth a look but no reason to refuse the file: `file:line: warning: rule-id: message`."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: warning: {self.rule}: {self.message}"


class PolicyInvalid(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass
class LoadedPolicy:
    policy: Policy
    file: str
    raw: bytes
    doc: LoadedYaml
    compiled: Any = None  # the CompiledPolicy validation built to prove the engine can take it


@cache
def policy_schema() -> dict[str, Any]:
    text = resources.files("rules").joinpath("schemas/policy.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(policy_schema())


def load_policy_file(path: str | FsPath) -> LoadedPolicy:
    path = FsPath(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise PolicyInvalid([Problem(str(path), 1, "file", err.strerror or str(err))]) from None
    return load_policy_bytes(raw, str(path))


def load_policy_bytes(raw: bytes, file: str) -> LoadedPolicy:
    try:
        doc = load_yaml(raw)
    except YamlError as err:
        raise PolicyInvalid([Problem(file, err.line, "file", err.message)]) from None
    if not isinstance(doc.data, dict):
        raise PolicyInvalid([Problem(file, 1, "file", "a policy file is a YAML mapping")])
    problems = sorted(list(_key_problems(doc, file)) or _schema_problems(doc, file), key=lambda p: p.line)
    if problems:
        raise PolicyInvalid(problems)
    try:
        policy = Policy.model_validate(doc.data)
    except PydanticError as err:  # the schema should have said it; say it all the same, at its line
        raise PolicyInvalid([Problem(file, doc.line_of(tuple(e["loc"])), owner_of(doc.data, tuple(e["loc"])),
                                     f"{'.'.join(map(str, e['loc']))}: {e['msg']}") for e in err.errors()]
                            ) from None
    problems = sorted(set(_Semantics(policy, doc, file).problems()), key=lambda p: p.line)
    if problems:
        raise PolicyInvalid(problems)
    loaded = LoadedPolicy(policy, file, raw, doc)
    _fits_the_engine(loaded)
    return loaded


def _fits_the_engine(loaded: LoadedPolicy) -> None:
    """Lay the policy out for the rules engine (rules.index_plan): what would still exceed one of
    its limits is refused at the rule's line."""
    from rules.compile import compile_policy  # compile builds on this module
    from rules.index_plan import LimitError

    try:
        loaded.compiled = compile_policy(loaded)
    except LimitError as err:
        raise PolicyInvalid([Problem(loaded.file, loaded.doc.line_of(err.where),
                                     owner_of(loaded.doc.data, err.where), err.message)]) from None


def _key_problems(doc: LoadedYaml, file: str) -> Iterator[Problem]:
    """Keys are text: YAML reads `true:`, `1:` or `null:` as other things, which no schema of
    JSON (whose keys are always text) can refuse."""
    def walk(node: Any, path: Path) -> Iterator[Problem]:
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    where = ".".join(map(str, path)) or "file"
                    yield Problem(file, doc.line_of((*path, key)), owner_of(doc.data, path),
                                  f"{where}: the key {key!r} is not text; quote it")
                else:
                    yield from walk(value, (*path, key))
        elif isinstance(node, list):
            for i, item in enumerate(node):
                yield from walk(item, (*path, i))

    return walk(doc.data, ())


def _schema_problems(doc: LoadedYaml, file: str) -> Iterator[Problem]:
    for error in _validator().iter_errors(doc.data):
        specific = best_match(error.context) if error.context else error
        path = tuple(specific.absolute_path)
        yield Problem(file, doc.line_of(path), owner_of(doc.data, path), _message(specific))


def _message(error: ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    text = error.message
    if error.validator == "additionalProperties":
        text = text.replace("Additional properties are not allowed", "unknown key(s)")
    return f"{where}: {text}" if where else text


def owner_of(data: Any, path: Path) -> str:
    """The rule id (or section) a path belongs to, for the middle of an error line."""
    if not path:
        return "policy"
    section = path[0]
    try:
        if section == "rules" and len(path) > 1:
            return str(data["rules"][path[1]].get("id", f"rules[{path[1]}]"))
        if section == "scoring" and len(path) > 2 and path[1] in ("fit", "engagement"):
            return str(data["scoring"][path[1]][path[2]].get("id", f"{path[1]}[{path[2]}]"))
        if section == "nurture" and len(path) > 2:
            return f"track {path[2]}"
        if section == "tests" and len(path) > 1:
            return f"test {data['tests'][path[1]].get('name', path[1])!r}"
        if section == "routing" and len(path) > 1:
            return f"routing {data['routing'][path[1]].get('id', path[1])!r}"
        if section == "handoff" and len(path) > 1:
            return f"handoff.{path[1]}"
    except (KeyError, IndexError, TypeError, AttributeError):
        pass
    return str(section)


class _Semantics:
    def __init__(self, policy: Policy, doc: LoadedYaml, file: str) -> None:
        self.p = policy
        self.doc = doc
        self.file = file
        self.states = set(policy.states)
        self.events = set(BUILTIN_EVENTS) | set(policy.events)
        self.content = set(policy.content)
        self.tracks = set(policy.nurture.tracks)
        self.out: list[Problem] = []

    def add(self, path: Path, message: str) -> None:
        self.out.append(Problem(self.file, self.doc.line_of(path), owner_of(self.doc.data, path), message))

    def problems(self) -> list[Problem]:
        p = self.p
        self._states()
        self._ids()
        stage_conds: list[tuple[int, Cond | None]] = []
        for i, rule in enumerate(p.scoring.fit):
            self._when(rule.when, ("scoring", "fit", i, "when"))
        for i, engaged in enumerate(p.scoring.engagement):
            for t in engaged.event_types:
                if t not in self.events:
                    self.add(("scoring", "engagement", i, "on"), f"unknown event type {t!r}")
                elif t in SYSTEM_EVENTS:
                    self.add(("scoring", "engagement", i, "on"), f"{t!r} is not a behaviour event")
            if engaged.when:
                self._when(engaged.when, ("scoring", "engagement", i, "when"))
            if engaged.decay is not None and engaged.decay != "none":
                self._duration(engaged.decay.half_life, ("scoring", "engagement", i, "decay"))
        for i, staged in enumerate(p.rules):
            stage_conds.append((i, self._when(staged.when, ("rules", i, "when"))))
            self._effects(staged.then, ("rules", i, "then"))
        for name, track in p.nurture.tracks.items():
            last = -1.0
            for j, step in enumerate(track.steps):
                here = ("nurture", "tracks", name, "steps", j)
                self._send(step.send, (*here, "send"))
                after = self._duration(step.after, (*here, "after"))
                if after is not None and after < last:
                    self.add((*here, "after"), "steps must be in order of `after`")
                last = after if after is not None else last
            if track.on_exhausted:
                self._effects(track.on_exhausted, ("nurture", "tracks", name, "on_exhausted"))
        self._routing()
        if p.handoff:
            for key in ("on_accept", "on_reject"):
                if (effects := getattr(p.handoff, key)) is not None:
                    self._effects(effects, ("handoff", key))
        self._consent()
        self._delivery()
        self._graph(stage_conds)
        self._tests()
        return self.out

    def _routing(self) -> None:
        always: str | None = None
        for i, rule in enumerate(self.p.routing):
            here: Path = ("routing", i)
            if always is not None:
                self.add((*here, "id"), f"routing rule {rule.id!r} is never reached: {always!r} before it "
                         "has no `when` and takes every hand-off")
            if rule.when is None:
                always = always or rule.id
                continue
            cond = self._when(rule.when, (*here, "when"))
            for t in fields_of(cond) if cond is not None else []:
                if t.field != "state" and not t.field.startswith(ROUTING_FIELDS):
                    self.add(t.where, f"routing reads who the lead is, not what just happened: {t.field!r} "
                             "is not one of state, lead.<name>, facts.<name>, score.<name>")
        if self.p.routing and self.p.handoff is None and not any(
                r.then.handoff is not None for r in self.p.rules):
            self.add(("routing",), "routing picks a queue for hand-offs, but no rule hands a lead off")

    def _profile_field(self, name: str, path: Path, what: str) -> None:
        profile = self.p.profile
        if profile is not None and name not in profile and name not in DERIVED_PROFILE:
            known = ", ".join(sorted(profile)) or "none"
            self.add(path, f"{what} {name!r} is not in the policy's profile (declared: {known})")

    def _consent(self) -> None:
        field = self.p.nurture.requires_consent
        if field is None:
            return
        where = ("nurture", "requires_consent")
        self._profile_field(field, where, "consent field")
        kind = (self.p.profile or {}).get(field)
        if kind is not None and kind != "boolean":
            self.add(where, f"consent field {field!r} is a {kind} in the profile; consent is a boolean")

    def _delivery(self) -> None:
        manners = self.p.delivery
        if manners is None:
            return
        if manners.quiet_hours is not None:
            start, end = manners.quiet_hours.split("-")
            if start == end:
                self.add(("delivery", "quiet_hours"), f"quiet hours {manners.quiet_hours!r} are empty: "
                         "start and end are the same time")
        if zone(manners.timezone) is None:
            self.add(("delivery", "timezone"), f"unknown time zone {manners.timezone!r} "
                     "(an IANA name such as Europe/Berlin)")
        for key in ("timezone_field", "country_field"):
            name = getattr(manners, key)
            if name is None or (key == "country_field" and "country_field" not in manners.model_fields_set
                                and self.p.profile is not None and name not in self.p.profile):
                continue  # the default country field counts only where the profile has one
            self._profile_field(name, ("delivery", key), "field")
            kind = (self.p.profile or {}).get(name)
            if kind is not None and kind != "text":
                self.add(("delivery", key), f"field {name!r} is a {kind} in the profile; a zone or a "
                         "country is text")
        for i, content in enumerate(manners.transactional):
            if content not in self.content:
                self.add(("delivery", "transactional", i), f"unknown content {content!r}")
        if manners.max_per_day is not None and manners.max_per_week is not None \
                and manners.max_per_week < manners.max_per_day:
            self.add(("delivery", "max_per_day"), f"max_per_day {manners.max_per_day} can never be "
                     f"reached: max_per_week is {manners.max_per_week}")

    def _states(self) -> None:
        seen: set[str] = set()
        for i, s in enumerate(self.p.states):
            if s in seen:
                self.add(("states", i), f"state {s!r} listed twice")
            seen.add(s)
        for s in REQUIRED_STATES:
            if s not in self.states:
                self.add(("states",), f"the lifecycle state {s!r} is required")
        if self.p.initial not in self.states:
            self.add(("initial",), f"unknown state {self.p.initial!r}")
        for i, s in enumerate(self.p.final_states):
            if s not in self.states:
                self.add(("final_states", i), f"unknown state {s!r}")
            elif s == self.p.initial:
                self.add(("final_states", i), f"{s!r} is the initial state: every lead would end at once")

    def _ids(self) -> None:
        seen: dict[str, Path] = {}
        places: list[tuple[str, Path]] = [
            *((r.id, ("scoring", "fit", i, "id")) for i, r in enumerate(self.p.scoring.fit)),
            *((r.id, ("scoring", "engagement", i, "id")) for i, r in enumerate(self.p.scoring.engagement)),
            *((r.id, ("rules", i, "id")) for i, r in enumerate(self.p.rules)),
            *((r.id, ("routing", i, "id")) for i, r in enumerate(self.p.routing)),
        ]
        for rule_id, path in places:
            if rule_id in seen:
                first = self.doc.line_of(seen[rule_id])
                self.add(path, f"duplicate rule id {rule_id!r} (first at line {first})")
            else:
                seen[rule_id] = path

    def _duration(self, text: str, path: Path) -> float | None:
        try:
            return parse_duration(text)
        except ValueError as err:
            self.add(path, str(err))
            return None

    def _when(self, when: dict[str, Any], path: Path) -> Cond | None:
        try:
            cond = parse_when(when, self.p.lists, path)
        except ConditionError as err:
            self.add(err.path, err.message)
            return None
        for t in fields_of(cond):
            values = t.value if isinstance(t.value, list) else [t.value]
            if t.field == "state" and t.op in ("eq", "ne", "in", "not_in"):
                for v in values:
                    if v not in self.states:
                        self.add(t.where, f"unknown state {v!r}")
            if t.field == "event.type" and t.op in ("eq", "ne", "in", "not_in"):
                for v in values:
                    if v not in self.events:
                        self.add(t.where, f"unknown event type {v!r}")
            if t.field == "track" and t.op in ("eq", "in") and t.value:
                for v in values:
                    if v not in self.tracks:
                        self.add(t.where, f"unknown track {v!r}")
            if t.field.startswith("lead."):
                self._profile_field(t.field.split(".")[1], t.where, "lead field")
            if t.field.startswith("count."):
                kind = t.field.split(".")[1]
                if kind != "any" and kind not in self.events:
                    self.add(t.where, f"unknown event type {kind!r} in count")
        if why := impossible(cond):
            self.add(path, f"condition can never hold: {why}")
        return cond

    def _effects(self, effects: Effects, path: Path) -> None:
        if effects.transition and effects.transition not in self.states:
            self.add((*path, "transition"), f"unknown state {effects.transition!r}")
        if effects.track and effects.track not in self.tracks:
            self.add((*path, "track"), f"unknown track {effects.track!r}")
        if effects.send:
            self._send(effects.send, (*path, "send"))
        if effects.disqualify and "disqualified" not in self.states:
            self.add((*path, "disqualify"), "disqualify needs a 'disqualified' state")
        if effects.disqualify and effects.transition:
            self.add((*path, "disqualify"), "disqualify already moves to 'disqualified'")
        if effects.schedule:
            self._duration(effects.schedule, (*path, "schedule"))
        if effects.handoff is not None and self.p.handoff is None:
            spec = effects.handoff
            if isinstance(spec, bool) or not (spec.queue and spec.sla):
                self.add((*path, "handoff"), "hand-off needs a queue and an SLA (or a handoff: section)")

    def _send(self, send: Send, path: Path) -> None:
        """One known content id, or an A/B test: at least two known variants, each once, and one
        share per variant, whole percentages above 0 adding up to 100."""
        if isinstance(send, str):
            if send not in self.content:
                self.add(path, f"unknown content {send!r}")
            return
        variants, split = send.variants, send.split
        if len(variants) < 2:
            self.add((*path, "variants"), f"an A/B test needs at least 2 variants, not {len(variants)} "
                     "(one content: `send: <id>`)")
        seen: set[str] = set()
        for i, variant in enumerate(variants):
            if variant in seen:
                self.add((*path, "variants", i), f"variant {variant!r} listed twice")
            elif variant not in self.content:
                self.add((*path, "variants", i), f"unknown content {variant!r}")
            seen.add(variant)
        if len(split) != len(variants):
            self.add((*path, "split"), f"{len(split)} share(s) for {len(variants)} variants: one share per "
                     "variant, in the same order")
        for i, share in enumerate(split):
            if share <= 0:
                self.add((*path, "split", i), f"share {share}: a share is a whole percentage above 0")
        if sum(split) != SHARES:
            self.add((*path, "split"), f"the shares add up to {sum(split)}, not {SHARES}")

    def _graph(self, stage_conds: list[tuple[int, Cond | None]]) -> None:
        """Reachability from the initial state, and cycles of rules guarded by state alone."""
        edges: list[tuple[frozenset[str] | None, str, str, bool]] = []  # (from, to, rule, unguarded)
        for i, cond in stage_conds:
            rule = self.p.rules[i]
            target = rule.then.transition or ("disqualified" if rule.then.disqualify else None)
            if target is None or cond is None:
                continue
            sources, unguarded = state_sources(cond)
            edges.append((sources, target, rule.id, unguarded))
        extra: list[tuple[str, str]] = []
        for name, track in self.p.nurture.tracks.items():
            if track.on_exhausted and track.on_exhausted.transition:
                extra.append((track.on_exhausted.transition, f"track {name}"))
        if self.p.handoff:
            for key in ("on_accept", "on_reject"):
                effects = getattr(self.p.handoff, key)
                if effects and effects.transition:
                    extra.append((effects.transition, f"handoff.{key}"))
        reached = _reach(self.p.initial, edges, extra)
        for i, s in enumerate(self.p.states):
            if s not in reached:
                self.add(("states", i), f"state {s!r} is unreachable: no rule moves a lead there")
        if "sales-ready" in reached:
            self._sales_ready_in_reach(stage_conds, edges, extra)
        self._cycles([(s, t, r) for s, t, r, unguarded in edges if unguarded and s])

    def _sales_ready_in_reach(self, stage_conds: list[tuple[int, Cond | None]],
                              edges: list[tuple[frozenset[str] | None, str, str, bool]],
                              extra: list[tuple[str, str]]) -> None:
        """Some lead can reach sales-ready with the scores a lead can have: a rule that needs more
        than the policy's rules and caps can ever give never fires. (Only for sales-ready: the
        lifecycle's point; other rules may wait for scores a later version gives.)"""
        most = score_bounds(self.p)
        why = {i: reason for i, cond in stage_conds if cond is not None
               and (reason := beyond(cond, most)) is not None}
        dead = {self.p.rules[i].id for i in why}
        if "sales-ready" in _reach(self.p.initial, [e for e in edges if e[2] not in dead], extra):
            return
        for i, reason in why.items():
            if self.p.rules[i].then.transition == "sales-ready":
                self.add(("rules", i, "when"), f"no lead can ever reach sales-ready: {reason}")

    def _cycles(self, edges: list[tuple[frozenset[str], str, str]]) -> None:
        graph: dict[str, list[tuple[str, str]]] = {}
        for sources, target, rule in edges:
            for s in sources:
                if s != target:
                    graph.setdefault(s, []).append((target, rule))
        reported: set[frozenset[str]] = set()

        def walk(node: str, trail: list[tuple[str, str]], seen: list[str]) -> None:
            for target, rule in graph.get(node, []):
                if target in seen:
                    loop = [r for _, r in trail[seen.index(target):]] + [rule]
                    if frozenset(loop) not in reported:
                        reported.add(frozenset(loop))
                        first = next(i for i, r in enumerate(self.p.rules) if r.id == loop[0])
                        self.add(
                            ("rules", first, "when"),
                            f"rules {' -> '.join(loop)} can cycle with no guard but state; "
                            "add a condition that the move itself makes false",
                        )
                    continue
                walk(target, [*trail, (target, rule)], [*seen, target])

        for start in list(graph):
            walk(start, [], [start])

    def _tests(self) -> None:
        for i, test in enumerate(self.p.tests):
            for name in test.lead:
                self._profile_field(str(name), ("tests", i, "lead", name), "lead field")
            state = test.expect.get("state")
            if state is not None and state not in self.states:
                self.add(("tests", i, "expect", "state"), f"unknown state {state!r}")
            for j, event in enumerate(test.events):
                if event.get("type") not in self.events:
                    self.add(("tests", i, "events", j, "type"), f"unknown event type {event.get('type')!r}")
                at = event.get("at")
                if at is not None and not (isinstance(at, str) and at.startswith("+")):
                    self.add(("tests", i, "events", j, "at"), "test times are offsets like +3d")
                elif at is not None:
                    self._duration(at[1:], ("tests", i, "events", j, "at"))


def _reach(initial: str, edges: list[tuple[frozenset[str] | None, str, str, bool]],
           extra: list[tuple[str, str]]) -> set[str]:
    """The states a lead can reach from `initial` by these moves (`extra`: from anywhere)."""
    reached = {initial, *(target for target, _ in extra)}
    grew = True
    while grew:
        grew = False
        for sources, target, _, _ in edges:
            if target not in reached and (sources is None or sources & reached):
                reached.add(target)
                grew = True
    return reached


def score_bounds(policy: Policy) -> dict[str, float]:
    """The most each score can ever be: fit rules' points up to `fit_cap`; a signal's rules'
    caps (no bound when a rule that adds has none); engagement up to `engagement_cap`."""
    scoring = policy.scoring
    fit = min(scoring.fit_cap, sum(r.points for r in scoring.fit if r.points > 0))
    signal = {"interest": 0.0, "intent": 0.0}
    for rule in scoring.engagement:
        if rule.points > 0:
            signal[rule.signal] += rule.cap if rule.cap is not None else float("inf")
    engagement = min(scoring.engagement_cap, signal["interest"] + signal["intent"])
    bant = len({r.bant for r in scoring.fit if r.bant and r.points > 0})
    return {"fit": fit, **signal, "engagement": engagement, "total": fit + engagement, "bant": bant}


def beyond(cond: Cond, most: dict[str, float]) -> str | None:
    """Why a condition can never hold for the scores a lead can have, if it cannot."""
    if isinstance(cond, Any_):
        reasons = [beyond(c, most) for c in cond.items]
        return reasons[0] if all(reasons) else None
    for test in cond.items if isinstance(cond, All) else (cond,):
        if not isinstance(test, Test):
            if (reason := beyond(test, most)) is not None:
                return reason
            continue
        score = test.field.removeprefix("score.")
        if score == test.field or score not in most or not isinstance(test.value, (int, float)):
            continue
        top = most[score]
        if (test.op == "gte" and top < test.value) or (test.op == "gt" and top <= test.value) or (
                test.op == "eq" and top < test.value):
            return (f"{test.field} {_OPS.get(test.op, test.op)} {test.value:g} needs more than the "
                    f"{top:g} the policy's rules and caps can give")
    return None


_OPS = {"gte": ">=", "gt": ">", "eq": "="}


def unserved_queues(loaded: LoadedPolicy, queues: Iterable[str], roster: str = "the roster"
                    ) -> list[PolicyWarning]:
    """Routing rules that name a queue no rep of the roster serves (`queues`: the queues its reps
    work, read by the caller): a hand-off routed there would wait where nobody reads it."""
    served = set(queues)
    out = []
    for i, rule in enumerate(loaded.policy.routing):
        if rule.queue not in served:
            path: Path = ("routing", i, "queue")
            out.append(PolicyWarning(
                loaded.file, loaded.doc.line_of(path), owner_of(loaded.doc.data, path),
                f"queue {rule.queue!r} is served by no rep of {roster}: a hand-off routed there "
                "would wait where nobody reads it"))
    return out


def check_files(paths: Iterable[str]) -> list[Problem]:
    problems: list[Problem] = []
    for path in paths:
        try:
            load_policy_file(path)
        except PolicyInvalid as err:
            problems.extend(err.problems)
    return problems
