"""A policy in words: each rule as one plain English sentence, for the marketers and sales people
who own it ("a lead with fit ≥ 50 and intent ≥ 25 becomes sales-ready and is handed to sales").

Pure: no I/O, no clock. Every construct of the policy model and of the `when:` language has a
phrasing; where none reads nicer, the test is said literally (`where lead.x op value`) rather
than left out, because a sentence that drops a condition would tell its reader a rule fires
where it does not. The same policy always gives the same sentences, in the same order.

Ids: a rule's own id; for the parts of a policy that have none, the id the evaluator gives their
firings where it has one (`handoff.on_accept`, `nurture.<track>.exhausted`), else a dotted name
that no rule id can take (rule ids have no dots): `scoring.fit_cap`, `nurture.<track>`,
`delivery.caps`, `topics`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

from rules.durations import DURATION
from rules.policy import (
    DERIVED_PROFILE,
    Effects,
    EngagementRule,
    FitRule,
    HandoffSpec,
    Policy,
    RoutingRule,
    StageRule,
)
from rules.yaml_lines import LoadedYaml, YamlError, load_yaml

GROUPS: tuple[str, ...] = (
    "fit", "engagement", "stages", "nurture", "routing", "handoff", "breach", "delivery", "topics",
)
OPERATORS = frozenset({
    "eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "in_list", "not_in_list", "prefix",
    "suffix", "exists",
})
LIST_SHOWN = 8  # a named list says this many of its values; the list itself is in the policy

_SYMBOL = {"gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}
_MIRROR = {"gt": "lt", "gte": "lte"}  # 10 < x for x > 10
_AMOUNT = {"gt": "more than", "gte": "at least", "lt": "less than", "lte": "at most"}
_COUNTED = {**_AMOUNT, "lt": "fewer than", "eq": "exactly"}
_NEGATION = {
    "eq": "ne", "ne": "eq", "gt": "lte", "gte": "lt", "lt": "gte", "lte": "gt",
    "in": "not_in", "not_in": "in", "in_list": "not_in_list", "not_in_list": "in_list",
}
_SCORES = {
    "fit": "fit", "interest": "interest", "intent": "intent", "engagement": "engagement",
    "total": "total score", "bant": "BANT count",
}
_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}
_PLAIN_TEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@/+:-]*$")
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
# (one, many) for the event types leadflow knows; a policy's own types read as "a <type> event"
_EVENTS: dict[str, tuple[str, str]] = {
    "signup": ("a sign-up", "sign-ups"),
    "form_submit": ("a form submission", "form submissions"),
    "page_view": ("a page view", "page views"),
    "email_open": ("an e-mail open", "e-mail opens"),
    "email_click": ("an e-mail click", "e-mail clicks"),
    "email_bounce": ("an e-mail bounce", "e-mail bounces"),
    "unsubscribe": ("an unsubscribe", "unsubscribes"),
    "complaint": ("a complaint", "complaints"),
    "preference_changed": ("a change of topic preferences", "changes of topic preferences"),
    "content_download": ("a content download", "content downloads"),
    "webinar_attended": ("a webinar attended", "webinars attended"),
    "demo_request": ("a demo request", "demo requests"),
    "contact_sales": ("a contact-sales request", "contact-sales requests"),
    "meeting_booked": ("a meeting booked", "meetings booked"),
    "reply": ("a reply", "replies"),
    "check": ("a scheduled check", "scheduled checks"),
    "sales_accept": ("an acceptance by sales", "acceptances by sales"),
    "sales_reject": ("a rejection by sales", "rejections by sales"),
    "sla_breach": ("an SLA breach", "SLA breaches"),
    "identify": ("an identify (two ids are one person)", "identifies"),
    "any": ("an event of any type", "events of any type"),
}

About = Literal["lead", "event"]  # what a condition's sentence is about: a lead, or one event


@dataclass(frozen=True)
class RuleInWords:
    id: str  # the rule's id as in the YAML, or a dotted one for what has none (see the module)
    group: str  # one of GROUPS
    sentence: str
    line: int | None  # where it starts in the YAML text given to in_words, if known


# --- the `when:` language as a tree that keeps what the file says (list names, file order) ---


@dataclass(frozen=True)
class _Test:
    field: str
    op: str
    value: Any
    list_name: str | None = None  # for in_list / not_in_list: the list's name; value its items


@dataclass(frozen=True)
class _Either:
    alternatives: tuple[tuple[_Node, ...], ...]  # each one a conjunction


@dataclass(frozen=True)
class _Not:
    """A negation that cannot be pushed into its tests (validation refuses these: `not` of a
    prefix or suffix); said literally."""

    items: tuple[_Node, ...]


_Node = Union[_Test, _Either, _Not]  # noqa: UP007 (a runtime alias, as in rules.conditions)


def _parse(when: Mapping[str, Any], lists: Mapping[str, Sequence[Any]]) -> list[_Node]:
    """The conjunction a `when:` mapping stands for, `all` flattened into it and `not` pushed
    into the tests as rules.conditions.negate does, so the words say what the engine tests."""
    items: list[_Node] = []
    for name, spec in when.items():
        if name == "all" and isinstance(spec, list):
            for sub in spec:
                items.extend(_parse(sub, lists) if isinstance(sub, Mapping) else [_Test("all", "eq", sub)])
        elif name == "any" and isinstance(spec, list):
            alternatives = tuple(tuple(_parse(sub, lists)) if isinstance(sub, Mapping)
                                 else (_Test("any", "eq", sub),) for sub in spec)
            items.extend(alternatives[0] if len(alternatives) == 1 else [_Either(alternatives)])
        elif name == "not" and isinstance(spec, Mapping):
            items.extend(_negate(tuple(_parse(spec, lists))))
        else:
            ops = spec if isinstance(spec, Mapping) else {"eq": spec}
            for op, value in ops.items():
                if op in ("in_list", "not_in_list") and isinstance(value, str):
                    items.append(_Test(name, op, list(lists.get(value, [])), value))
                else:
                    items.append(_Test(name, str(op), value))
    return items


def _negate(items: tuple[_Node, ...]) -> list[_Node]:
    """not (a and b) = (not a) or (not b)."""
    negated: list[tuple[_Node, ...]] = []
    for node in items:
        if isinstance(node, _Test) and node.op == "exists" and isinstance(node.value, bool):
            negated.append((_Test(node.field, "exists", not node.value),))
        elif isinstance(node, _Test) and node.op in _NEGATION:
            negated.append((_Test(node.field, _NEGATION[node.op], node.value, node.list_name),))
        elif isinstance(node, _Either):  # not (x or y) = (not x) and (not y)
            negated.append(tuple(n for alt in node.alternatives for n in _negate(alt)))
        elif isinstance(node, _Not):
            negated.append(node.items)
        else:
            negated.append((_Not((node,)),))
    if len(negated) == 1:
        return list(negated[0])
    return [_Either(tuple(negated))]


# --- values ---


def _number(n: float) -> str:
    """A number as the policy writes it: 50, 2.5, 1000000 (a whole float reads as a whole number)."""
    if isinstance(n, float) and n.is_integer() and abs(n) < 1e16:
        return str(int(n))
    return repr(n)


def _quoted(text: str) -> str:
    return f"'{text}'" if "'" not in text else json.dumps(text, ensure_ascii=False)


def _value(v: Any) -> str:
    """A value of a condition or a fact. Texts that could be mistaken for a number, a boolean, or
    run into the words around them are quoted: the text "50" equals no number 50."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return _number(v)
    if isinstance(v, str):
        if _PLAIN_TEXT.match(v) and v.lower() not in ("true", "false", "null", "none") and not _numeric(v):
            return v
        return _quoted(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return _quoted(json.dumps(v, sort_keys=True, default=str))


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _duration(text: Any) -> str:
    """`30d` as "30 days", `1h` as "1 hour"; anything else as written."""
    match = DURATION.match(str(text)) if isinstance(text, str) else None
    if match is None:
        return _value(text)
    amount, unit = match.group(1), _UNITS[match.group(2)]
    shown = _number(float(amount)) if "." in amount else str(int(amount))
    return f"{shown} {unit}{'' if float(amount) == 1 else 's'}"


def _or(words: Sequence[str], last: str = "or") -> str:
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {last} {words[-1]}"


def _and(words: Sequence[str]) -> str:
    return _or(words, "and")


def _values(values: Any) -> list[Any]:
    return list(values) if isinstance(values, (list, tuple)) else [values]


def _event_one(kind: str) -> str:
    """An event type with its article: "a demo request", "a trial_started event"."""
    if kind in _EVENTS:
        return _EVENTS[kind][0]
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind} event"


def _event_many(kind: str) -> str:
    return _EVENTS[kind][1] if kind in _EVENTS else f"{kind} events"


def send_in_words(send: object) -> str:
    """What one send sends: a content id, or an A/B test's variants and split ("welcome-a or
    welcome-b (split 50/50)"). The one place a new form of `send` needs words."""
    if isinstance(send, str):
        return send
    variants = getattr(send, "variants", None)
    if variants is None and isinstance(send, Mapping):
        variants, split = send.get("variants"), send.get("split")
    else:
        split = getattr(send, "split", None)
    if isinstance(variants, (list, tuple)) and variants:
        said = _or([str(v) for v in variants])
        if isinstance(split, (list, tuple)) and split:
            return f"{said} (split {'/'.join(_value(s) for s in split)})"
        return f"{said} (split evenly)"
    return _value(send)


# --- conditions ---


@dataclass(frozen=True)
class _Clause:
    rank: int  # where it goes in the sentence: state first, the event last
    word: str  # "with" and "whose" clauses next to each other share the word
    text: str


class _Words:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.lists = policy.lists
        self.lead_names = set(policy.profile or ()) | DERIVED_PROFILE

    # a condition, as the words after "a lead" (about="lead") or after "a page view" ("event")
    def condition(self, when: Mapping[str, Any] | None, about: About = "lead") -> str:
        said = self._phrase(_parse(when or {}, self.lists), about)
        # "a form submission with amount ≥ 500, from a lead with fit > 20, adds ...": the lead's
        # part of an event's condition set off, so that what follows it is the event's again
        if about == "event" and ", from a lead " in said and not said.startswith("from a lead "):
            said += ","
        return said

    def _phrase(self, nodes: Sequence[_Node], about: About) -> str:
        event, lead, either = self._conjunction(nodes, about)
        if about == "lead":
            return _and(lead + either + ([f"on {event}"] if event else []))
        said = _and(([event] if event else []) + either)
        from_lead = f"from a lead {_and(lead)}" if lead else ""
        return f"{said}, {from_lead}" if said and from_lead else said or from_lead

    def _conjunction(self, nodes: Sequence[_Node], about: About) -> tuple[str, list[str], list[str]]:
        """(what it says of the event, of the lead, its alternatives and negations). About a lead, the
        event part is a noun ("an e-mail bounce whose hard is not false"); about an event, it
        qualifies the event the sentence names ("whose path starts with '/blog'")."""
        lead: list[_Clause] = []
        event: list[_Clause] = []
        kinds: _Test | None = None  # the event.type test that names the event, about a lead
        either: list[str] = []
        for node in _ranges(nodes):
            if isinstance(node, _Either):
                either.append(self._either(node, about))
            elif isinstance(node, _Not):
                either.append(f"not ({self._phrase(node.items, about)})")
            elif isinstance(node, tuple):
                noun, rank, of_event = self._noun(node[0].field)
                (event if of_event else lead).append(_range(node, noun, rank))
            elif _of_event(node.field):
                if about == "lead" and kinds is None and _names_kinds(node):
                    kinds = node
                else:
                    event.append(_generic(node, self._noun(node.field)[0], rank=9))
            else:
                lead.append(self._lead_test(node))
        lead.sort(key=lambda c: c.rank)
        lead_parts = _merged(lead)
        if len(lead_parts) > 1 and lead[0].rank == 0 and lead_parts[1].startswith(("with ", "whose ")):
            # "a lead in nurturing with fit ≥ 50": the state and what qualifies it read as one
            lead_parts[:2] = [" ".join(lead_parts[:2])]
        event_said = _and(_merged(event))
        if about == "lead" and (kinds is not None or event_said):
            event_said = _event_noun(kinds, event_said)
        return event_said, lead_parts, either

    def _either(self, node: _Either, about: About) -> str:
        return "either " + _or([f"({self._phrase(alt, about)})" for alt in node.alternatives])

    def _noun(self, field: str) -> tuple[str, int, bool]:
        """What a field is called in a "with"/"whose" clause, its rank, and whether it is the event's."""
        head, _, rest = field.partition(".")
        if head == "event" and rest:
            return rest, 9, True
        if head == "score" and rest in _SCORES:
            return _SCORES[rest], 4, False
        if head == "lead" and rest:
            return rest, 6, False
        if head == "facts" and rest:
            # a fact named as a profile field would read as that field
            return (f"fact {rest}" if rest in self.lead_names else rest), 7, False
        return field, 8, False

    def _lead_test(self, t: _Test) -> _Clause:
        head, _, rest = t.field.partition(".")
        if t.field == "state":
            return self._state(t)
        if t.field == "track":
            return self._track(t)
        if t.field == "handoff_open":
            return _handoff_open(t)
        if t.field in ("inactive_for", "in_state_for"):
            return _time(t)
        if head == "count" and rest.count(".") >= 1:
            return _count(t)
        if head == "facts" and rest:
            return self._fact(t)
        if (head == "score" and rest in _SCORES) or (head == "lead" and rest):
            noun, rank, _ = self._noun(t.field)
            return _generic(t, noun, rank=rank)
        return _literal(t, rank=8)

    def _state(self, t: _Test) -> _Clause:
        values = _values(t.value)
        if t.op in ("eq", "in") and t.list_name is None:
            return _Clause(0, "", "in " + _or([_value(v) for v in values]))
        if t.op in ("ne", "not_in") and t.list_name is None:
            return _Clause(0, "", "not in " + _or([_value(v) for v in values]))
        return _generic(t, "state", rank=0)

    def _track(self, t: _Test) -> _Clause:
        values = _values(t.value)
        names = _or([_quoted(str(v)) if isinstance(v, str) else _value(v) for v in values])
        if t.op in ("eq", "in") and t.list_name is None:
            return _Clause(1, "", f"on nurture track {names}")
        if t.op in ("ne", "not_in") and t.list_name is None:
            return _Clause(1, "", f"not on nurture track {names}")
        if t.op == "exists" and isinstance(t.value, bool):
            return _Clause(1, "", "on a nurture track" if t.value else "on no nurture track")
        return _generic(t, "track", rank=1)

    def _fact(self, t: _Test) -> _Clause:
        noun, rank, _ = self._noun(t.field)
        if t.value is True and t.op == "eq":
            return _Clause(rank, "", f"marked {noun}")
        if t.value is True and t.op == "ne":
            return _Clause(rank, "", f"not marked {noun}")
        return _generic(t, noun, rank=rank)

    # --- effects ---

    def effects(self, fx: Effects) -> str:
        said: list[str] = []
        if fx.disqualify:
            said.append(f"is disqualified because {_quoted(fx.disqualify)}")
            if fx.transition and fx.transition != "disqualified":
                said.append(f"does not become {fx.transition} (a disqualification wins)")
        elif fx.transition:
            said.append(f"becomes {fx.transition}")
        if fx.stop_track:
            said.append("stops its nurture track")
        if fx.track:
            said.append(f"starts nurture track {_quoted(fx.track)}")
        if fx.send is not None:
            said.append(f"is sent {send_in_words(fx.send)}")
        if fx.handoff is not None:
            said.append(_handoff(fx.handoff))
        for name, v in fx.set.items():
            said.append(f"is marked {name}" if v is True else f"has {name} set to {_value(v)}")
        if fx.schedule:
            said.append(f"is checked again after {_duration(fx.schedule)}")
        words = _and(said) if said else "changes nothing"
        if fx.reason:
            words += f", with reason {_quoted(fx.reason)}"
        return words

    # --- the sentences ---

    def fit(self, rule: FitRule) -> str:
        who = self.condition(rule.when)
        points = rule.points
        verb = "loses" if points < 0 else "counts"
        bant = f" for {rule.bant}" if rule.bant else ""
        return f"{_lead(who)} {verb} {_points(abs(points), 'fit')}{bant}"

    def engagement(self, rule: EngagementRule) -> str:
        what = _or([_event_one(k) for k in rule.event_types])
        which = self.condition(rule.when, "event")
        verb = "takes" if rule.points < 0 else "adds"
        said = f"{what}{' ' + which if which else ''} {verb} {_points(abs(rule.points), rule.signal)}"
        said += f", {self._decay(rule)}"
        if rule.cap is not None:
            said += f", at most {_number(rule.cap)}" + (" in all" if rule.points < 0 else "")
        return said

    def _decay(self, rule: EngagementRule) -> str:
        if rule.decay == "none":
            return "never fading"
        half_life = rule.decay.half_life if rule.decay is not None else (
            self.policy.scoring.decay.half_life if self.policy.scoring.decay is not None else None)
        return f"halving every {_duration(half_life)}" if half_life is not None else "never fading"

    def stage(self, rule: StageRule) -> str:
        return f"{_lead(self.condition(rule.when))} {self.effects(rule.then)} (priority {rule.priority})"

    def routing(self, rule: RoutingRule, first: bool) -> str:
        who = self.condition(rule.when) if rule.when is not None else ""
        if not who:
            return f"{'every' if first else 'every other'} lead is handed to queue {_quoted(rule.queue)}"
        return f"{'' if first else 'otherwise, '}{_lead(who)} is handed to queue {_quoted(rule.queue)}"

    def track(self, name: str, steps: Sequence[tuple[str, object]]) -> str:
        said = []
        for i, (after, send) in enumerate(steps):
            when = "at once" if _at_once(after) else f"after {_duration(after)}"
            said.append(f"{'then ' if i == 1 else ''}{send_in_words(send)} {when}")
        counted = sum(1 for after, _ in steps if not _at_once(after)) >= 2
        listed = ", ".join(said) if len(said) == 2 else _and(said)
        return (f"nurture track {_quoted(name)} sends {listed}"
                + (" (each counted from the track's start)" if counted else ""))


def _of_event(field: str) -> bool:
    return field == "event" or field.startswith("event.")


def _names_kinds(t: _Test) -> bool:
    """An event.type test that can name the event: "a demo request", "any event but a check"."""
    values = _values(t.value)
    return (t.field == "event.type" and t.op in ("eq", "in", "ne", "not_in") and t.list_name is None
            and bool(values) and all(isinstance(v, str) for v in values))


def _event_noun(kinds: _Test | None, said: str) -> str:
    """The event a lead's condition is about: "an e-mail bounce whose hard is not false",
    "any event but a check", "an event whose source is webinar and that is not a check"."""
    if kinds is None:
        return f"an event {said}"
    ones = _or([_event_one(k) for k in _values(kinds.value)])
    if kinds.op in ("eq", "in"):
        return f"{ones} {said}" if said else ones
    return f"an event {said} and that is not {ones}" if said else f"any event but {ones}"


_Bounds = tuple[_Test, _Test]  # a lower and an upper bound of one field: a range


def _ranges(nodes: Sequence[_Node]) -> list[_Node | _Bounds]:
    """The nodes, with a lower and an upper bound of one field made one range ("with 10 ≤ budget
    < 50"), at the place of the first of the two."""
    lows = {i: n for i, n in enumerate(nodes) if isinstance(n, _Test) and _bound(n, ("gt", "gte"))}
    highs = {i: n for i, n in enumerate(nodes) if isinstance(n, _Test) and _bound(n, ("lt", "lte"))}
    pairs: dict[int, _Bounds] = {}
    taken: set[int] = set()
    for i, low in lows.items():
        j = next((j for j, high in highs.items() if j not in taken and high.field == low.field), None)
        if j is not None:
            taken.add(j)
            pairs[min(i, j)] = (low, highs[j])
            taken.add(max(i, j))
    return [pairs.get(i, node) for i, node in enumerate(nodes) if i in pairs or i not in taken]


def _bound(t: _Test, ops: tuple[str, str]) -> bool:
    return (t.op in ops and t.field.partition(".")[0] in ("score", "lead", "facts", "event")
            and isinstance(t.value, (int, float)) and not isinstance(t.value, bool))


def _range(bounds: _Bounds, noun: str, rank: int) -> _Clause:
    low, high = bounds
    return _Clause(rank, "with", f"{_number(low.value)} {_SYMBOL[_MIRROR[low.op]]} {noun} "
                                 f"{_SYMBOL[high.op]} {_number(high.value)}")


def _lead(who: str) -> str:
    return f"a lead {who}" if who else "every lead"


def _points(amount: float, kind: str) -> str:
    return f"{_number(amount)} {kind} point{'' if amount == 1 else 's'}"


def _at_once(after: str) -> bool:
    match = DURATION.match(after)
    return match is not None and float(match.group(1)) == 0


def _merged(clauses: Iterable[_Clause]) -> list[str]:
    """Neighbouring "with" (and "whose") clauses share their word: "with fit ≥ 50 and intent ≥ 25"."""
    out: list[tuple[str, list[str]]] = []
    for clause in clauses:
        if clause.word in ("with", "whose") and out and out[-1][0] == clause.word:
            out[-1][1].append(clause.text)
        else:
            out.append((clause.word, [clause.text]))
    return [f"{word} {' and '.join(texts)}" if word else " and ".join(texts) for word, texts in out]


def _generic(t: _Test, noun: str, rank: int) -> _Clause:
    """Any field, any operator: "whose role is vp or director", "with budget ≥ 10000"."""
    op, v = t.op, t.value
    if t.list_name is not None and op in ("in_list", "not_in_list"):
        items = _values(v)
        shown = ", ".join(_value(x) for x in items[:LIST_SHOWN])
        if len(items) > LIST_SHOWN:
            shown += f" and {len(items) - LIST_SHOWN} more"
        where = f"on the list {t.list_name}" + (f" ({shown})" if items else "")
        return _Clause(rank, "whose", f"{noun} is {'not ' if op == 'not_in_list' else ''}{where}")
    is_number = isinstance(v, (int, float)) and not isinstance(v, bool)
    if op in _SYMBOL and is_number:
        return _Clause(rank, "with", f"{noun} {_SYMBOL[op]} {_number(v)}")
    if op in ("eq", "ne") and is_number:
        return _Clause(rank, "with", f"{noun} {'=' if op == 'eq' else '≠'} {_number(v)}")
    if op == "eq" and not isinstance(v, list):
        return _Clause(rank, "whose", f"{noun} is {_value(v)}")
    if op == "ne" and not isinstance(v, list):
        return _Clause(rank, "whose", f"{noun} is not {_value(v)}")
    if op == "in" and isinstance(v, list):
        return _Clause(rank, "whose", f"{noun} is {_or([_value(x) for x in v]) or 'in an empty list'}")
    if op == "not_in" and isinstance(v, list):
        said = [_value(x) for x in v]
        if len(said) == 2:
            return _Clause(rank, "whose", f"{noun} is neither {said[0]} nor {said[1]}")
        if len(said) > 2:
            return _Clause(rank, "whose", f"{noun} is none of {_or(said)}")
        return _Clause(rank, "whose", f"{noun} is not {said[0] if said else 'in an empty list'}")
    if op in ("prefix", "suffix") and isinstance(v, str):
        return _Clause(rank, "whose", f"{noun} {'starts' if op == 'prefix' else 'ends'} with {_quoted(v)}")
    if op == "exists" and isinstance(v, bool):
        return _Clause(rank, "whose", f"{noun} is {'set' if v else 'not set'}")
    return _literal(t, rank)


def _literal(t: _Test, rank: int) -> _Clause:
    """What has no phrasing, as the file says it."""
    op = _SYMBOL.get(t.op, t.op)
    v = f"list {t.list_name} {_value(t.value)}" if t.list_name is not None else _value(t.value)
    return _Clause(rank, "where", f"{t.field} {op} {v}")


def _handoff_open(t: _Test) -> _Clause:
    # handoff_open is always true or false in the engine's snapshot (rules.evaluate), never missing
    if (t.op, t.value) in (("eq", True), ("ne", False)):
        return _Clause(2, "with", "a hand-off open")
    if (t.op, t.value) in (("eq", False), ("ne", True)):
        return _Clause(2, "with", "no hand-off open")
    return _generic(t, "handoff_open", rank=2)


def _time(t: _Test) -> _Clause:
    if t.op in _AMOUNT and isinstance(t.value, str) and DURATION.match(t.value):
        how = _AMOUNT[t.op]
        where = "inactive" if t.field == "inactive_for" else "in its state"
        return _Clause(3, "", f"{where} for {how} {_duration(t.value)}")
    return _generic(t, t.field, rank=3)


def _count(t: _Test) -> _Clause:
    kind, _, window = t.field.partition(".")[2].rpartition(".")
    is_number = isinstance(t.value, (int, float)) and not isinstance(t.value, bool)
    span = f"in the last {_duration(window)}"
    if span.startswith("in the last 1 "):  # "in the last day"
        span = "in the last " + span.removeprefix("in the last 1 ")
    if t.op in _COUNTED and is_number:
        many = _event_one(kind).split(" ", 1)[1] if t.value == 1 else _event_many(kind)
        return _Clause(5, "with", f"{_COUNTED[t.op]} {_number(t.value)} {many} {span}")
    if t.op == "ne" and is_number:
        return _Clause(5, "with", f"other than {_number(t.value)} {_event_many(kind)} {span}")
    return _literal(t, rank=5)


def _handoff(spec: bool | HandoffSpec) -> str:
    if isinstance(spec, bool):
        # the schema takes only `true`; the evaluator hands off for any value but null
        return "is handed to sales" if spec else "is handed to sales (handoff: false still hands off)"
    queue, sla = spec.queue, spec.sla
    said = "is handed to sales"
    if queue:
        said += f" in queue {_quoted(queue)}"
    if sla:
        said += f" with an SLA of {_duration(sla)}"
    return said


def _breach(steps: Sequence[str]) -> str:
    said = []
    for i, step in enumerate(steps):
        if i < len(_ORDINALS):
            at = f"at the {_ORDINALS[i]}" + (" SLA breach" if i == 0 else "")
        else:
            at = f"at SLA breach {i + 1}"
        subject = "the hand-off" if i == 0 else "it"
        if step == "reassign":
            said.append(f"{at} {subject} goes to the next free rep of its queue")
        else:
            queue = step.partition(":")[2]
            said.append(f"{at} {subject} is escalated to queue {_quoted(queue)}")
    if len(steps) == 1:
        return said[0].replace("at the first SLA breach", "at an SLA breach")
    return _and(said)


# --- the policy ---


class _Lines:
    """The line each part starts at in the YAML text, when that text is the policy's."""

    def __init__(self, text: str | None) -> None:
        self.doc: LoadedYaml | None = None
        if text is not None:
            try:
                self.doc = load_yaml(text.encode("utf-8", "surrogatepass"))
            except YamlError:
                self.doc = None

    def at(self, *path: Any, rule_id: str | None = None) -> int | None:
        if self.doc is None or path not in self.doc.lines:
            return None
        if rule_id is not None:  # a text that is not this policy's says nothing of its lines
            node: Any = self.doc.data
            for part in path:
                try:
                    node = node[part]
                except (KeyError, IndexError, TypeError):
                    return None
            if not isinstance(node, Mapping) or node.get("id") != rule_id:
                return None
        return self.doc.lines[path]

    def first(self, *paths: tuple[Any, ...]) -> int | None:
        found = [line for path in paths if (line := self.at(*path)) is not None]
        return min(found) if found else None


def in_words(policy: Policy, text: str | None = None) -> list[RuleInWords]:
    """Every rule of the policy as one sentence, in GROUPS order; within a group, its rules in
    file order. `text`: the policy's YAML, for the line each sentence's rule starts at."""
    words, lines = _Words(policy), _Lines(text)
    out: list[RuleInWords] = []

    def add(id_: str, group: str, sentence: str, line: int | None) -> None:
        out.append(RuleInWords(id_, group, sentence, line))

    scoring = policy.scoring
    for i, fit in enumerate(scoring.fit):
        add(fit.id, "fit", words.fit(fit), lines.at("scoring", "fit", i, rule_id=fit.id))
    if scoring.fit or "fit_cap" in scoring.model_fields_set:
        add("scoring.fit_cap", "fit", f"fit points add up to at most {_number(scoring.fit_cap)}",
            lines.at("scoring", "fit_cap"))
    for i, eng in enumerate(scoring.engagement):
        add(eng.id, "engagement", words.engagement(eng),
            lines.at("scoring", "engagement", i, rule_id=eng.id))
    if scoring.decay is not None:
        add("scoring.decay", "engagement",
            f"engagement points halve every {_duration(scoring.decay.half_life)} unless their rule says "
            "otherwise", lines.at("scoring", "decay"))
    if scoring.engagement or "engagement_cap" in scoring.model_fields_set:
        add("scoring.engagement_cap", "engagement",
            f"interest and intent points together count at most {_number(scoring.engagement_cap)} "
            "for engagement", lines.at("scoring", "engagement_cap"))

    for i, rule in enumerate(policy.rules):
        add(rule.id, "stages", words.stage(rule), lines.at("rules", i, rule_id=rule.id))

    nurture = policy.nurture
    if nurture.requires_consent:
        add("nurture.requires_consent", "nurture",
            f"e-mail the policy sends goes only to a lead whose {nurture.requires_consent} is true",
            lines.at("nurture", "requires_consent"))
    for name, track in nurture.tracks.items():
        steps = [(step.after, step.send) for step in track.steps]
        add(f"nurture.{name}", "nurture", words.track(name, steps), lines.at("nurture", "tracks", name))
        if track.on_exhausted is not None:
            add(f"nurture.{name}.exhausted", "nurture",
                f"when nurture track {_quoted(name)} runs out, the lead {words.effects(track.on_exhausted)}",
                lines.at("nurture", "tracks", name, "on_exhausted"))

    for i, route in enumerate(policy.routing):
        add(route.id, "routing", words.routing(route, i == 0), lines.at("routing", i, rule_id=route.id))

    handoff = policy.handoff
    if handoff is not None:
        unless = " when no routing rule picks another" if policy.routing else ""
        sla = _duration(handoff.sla)
        add("handoff", "handoff",
            f"a hand-off goes to queue {_quoted(handoff.queue)}{unless}, with an SLA of {sla}",
            lines.at("handoff"))
        for key, who in (("on_accept", "accept"), ("on_reject", "reject")):
            fx = getattr(handoff, key)
            if fx is not None:
                add(f"handoff.{key}", "handoff", f"when sales {who} a hand-off, the lead {words.effects(fx)}",
                    lines.at("handoff", key))
        if handoff.on_breach is not None:
            add("handoff.on_breach", "breach", _breach(handoff.on_breach.steps()),
                lines.at("handoff", "on_breach"))

    if policy.delivery is not None:
        out.extend(_delivery(policy, lines))
    if policy.topics:
        add("topics", "topics", "a person may keep or drop each topic of e-mail on the preference page: "
            + _and(policy.topics), lines.at("topics"))
    order = {group: i for i, group in enumerate(GROUPS)}
    return sorted(out, key=lambda r: order[r.group])  # stable: file order within a group


def _emails(n: int) -> str:
    return f"{n} marketing e-mail{'' if n == 1 else 's'}"


def _delivery(policy: Policy, lines: _Lines) -> list[RuleInWords]:
    manners = policy.delivery
    assert manners is not None
    out: list[RuleInWords] = []
    caps = []
    if manners.max_per_day is not None:
        caps.append(f"at most {_emails(manners.max_per_day)} a day (its own calendar day)")
    if manners.max_per_week is not None:
        most = str(manners.max_per_week) if caps else _emails(manners.max_per_week)
        caps.append(f"at most {most} in any 7 days")
    if caps:
        over = ("waits for the next slot within the caps" if manners.when_capped == "wait"
                else "is not sent at all")
        out.append(RuleInWords(
            "delivery.caps", "delivery",
            f"a lead gets {_and(caps)}; one over a cap {over}",
            lines.first(("delivery", "max_per_day"), ("delivery", "max_per_week"),
                        ("delivery", "when_capped"))))
    elif "when_capped" in manners.model_fields_set:
        out.append(RuleInWords(
            "delivery.caps", "delivery",
            f"no cap is set, so when_capped: {manners.when_capped} holds back no e-mail",
            lines.at("delivery", "when_capped")))
    if manners.quiet_hours is not None:
        start, _, end = manners.quiet_hours.partition("-")
        out.append(RuleInWords(
            "delivery.quiet_hours", "delivery",
            f"no marketing e-mail goes out between {start} and {end} on the lead's clock: "
            f"it waits until {end}",
            lines.at("delivery", "quiet_hours")))
    zones = []
    if manners.timezone_field:
        zones.append(f"the time zone in its {manners.timezone_field} field")
    if manners.country_field:
        zones.append(f"that of the country in its {manners.country_field} field")
    zones.append(manners.timezone)
    out.append(RuleInWords(
        "delivery.timezone", "delivery",
        "a lead's clock is " + ", else ".join(zones),
        lines.first(("delivery", "timezone_field"), ("delivery", "country_field"), ("delivery", "timezone"))
        or lines.at("delivery")))
    if manners.transactional:
        many = len(manners.transactional) > 1
        out.append(RuleInWords(
            "delivery.transactional", "delivery",
            f"{_and(manners.transactional)} {'are' if many else 'is'} mail the person asked for: "
            "never held by these manners and never counted",
            lines.at("delivery", "transactional")))
    return out
