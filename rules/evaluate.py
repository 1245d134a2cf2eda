"""`evaluate(policy, lead, event, now) -> Decision`: the pure core.

No I/O and no clock: `now` is passed in, and the same inputs give the same Decision. One
evaluation runs in one fresh engine session, deleted before returning:

1. score phase: the snapshot (tag `score`) is matched; fit rules give the fit score and BANT,
   engagement rules add decaying contributions for this event.
2. nurture: track steps that are due are sent; an exhausted track applies `on_exhausted`.
3. stage phase: match-resolve-act to quiescence. The snapshot (tag `stage`) is matched, the
   best unfired rule (priority, then file order) acts; when its effects change the lead, the
   new snapshot is asserted and matched again. Each rule fires at most once per evaluation, so
   chains always end; `limits.max_chain` bounds their length with a clear error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Any

from rules import engine
from rules.compile import CompiledPolicy, CompiledRule
from rules.durations import parse_duration
from rules.identity import lead_key
from rules.models import (
    SYSTEM_EVENTS,
    Action,
    Contribution,
    Decision,
    Event,
    Firing,
    LeadRef,
    LeadState,
    Scores,
    StoryEntry,
    TrackState,
    built,
)
from rules.policy import Effects, Send, Variants
from rules.routing import route
from rules.scoring import SCORE_DIGITS, Levels, compacted
from rules.variants import AbStep, rule_send, track_step

MAX_HISTORY = 500
LAYOUT = "2"  # how facts are laid out (rules.index_plan) and keyed: a change makes leads forget their fit
RECENT = 10
MEMO = 4096  # engine answers remembered per phase of a policy version
BUCKET = 60.0  # seconds: counts in windows are exact to the minute


# Events that stop all marketing e-mail to a lead for good, and what the story says. Built in,
# not policy: an unsubscribe must hold whatever a later policy version says (and the delivery
# ledger refuses the address as well).
MAIL_STOPS = {
    "unsubscribed": "asked for no more e-mail: every track stopped, no marketing e-mail again",
    "bounced": "the address bounced hard: every track stopped, no marketing e-mail again",
    "complained": "reported the e-mail as spam: every track stopped, no marketing e-mail again",
}


ROUTED = "(routing)"  # a hand-off's queue until routing has picked it


MAIL_STOP_EVENTS = frozenset({"unsubscribe", "email_bounce", "complaint"})  # the events mail_stop_of reads


def mail_stop_of(event: Event) -> str | None:
    if event.type == "unsubscribe":
        return "unsubscribed"
    if event.type == "complaint":  # an abuse report (leadflow.delivery.inbound)
        return "complained"
    if event.type == "email_bounce" and event.data.get("hard", True) is not False:
        return "bounced"  # a soft bounce says `hard: false`
    return None


class ChainLimitError(RuntimeError):
    """A policy's rules chained longer than its `limits.max_chain` in one evaluation."""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def new_lead(policy: CompiledPolicy, event: Event, now: datetime) -> LeadState:
    t = now.timestamp()
    return LeadState(
        key=lead_key(event.lead), policy=policy.name, version=policy.version,
        state=policy.policy.initial, state_since=t, created=t,
    )


@dataclass(slots=True)
class _Work:
    """The lead while one evaluation changes it; becomes a new LeadState at the end."""

    state: str
    state_since: float
    facts: dict[str, Any]
    track: TrackState | None
    handoff_open: bool
    wakeups: list[float]
    story: list[StoryEntry]
    profile: dict[str, Any] = field(default_factory=dict)
    mail_stop: str | None = None
    actions: list[Action] = field(default_factory=list)
    fired: list[Firing] = field(default_factory=list)
    fact_changes: dict[str, Any] = field(default_factory=dict)


def evaluate(policy: CompiledPolicy, lead: LeadState | None, event: Event, now: datetime) -> Decision:
    t = now.timestamp()
    if lead is None:
        lead = new_lead(policy, event, now)
    if event.type not in policy.event_types:
        return _rejected(policy, lead, event, t, f"unknown event type {event.type!r} for policy "
                         f"{policy.name} v{policy.version}")
    at = event.at.timestamp() if event.at else t
    behaviour = event.type not in SYSTEM_EVENTS
    # an open or click a machine made (a privacy proxy, a link scanner) is no sign of life of
    # the lead: engagement rules still see it (the policy decides its points), activity does not
    person = behaviour and event.data.get("machine") is not True

    profile = lead.profile
    incoming = _profile_of(event.lead)
    if incoming and not _holds(profile, incoming):
        profile = {**profile, **incoming}
        if isinstance(profile.get("email"), str):
            profile["email"] = profile["email"].strip().lower()
    history, recent = lead.history, lead.recent
    last_activity = lead.last_activity
    if person:
        recent = [*recent[-RECENT + 1:], (event.type, at)]
        if event.type in policy.counted or "any" in policy.counted:
            history = _remember(history, event.type, at, t - policy.history_window)
        last_activity = at if last_activity is None else max(last_activity, at)

    w = _Work(lead.state, lead.state_since, dict(lead.facts), lead.track, lead.handoff_open,
              [x for x in lead.wakeups if x > t] if lead.wakeups else [], [], profile, lead.mail_stop)
    event_key = event.id or f"t{t:.3f}"
    if event.type in MAIL_STOP_EVENTS:
        _stop_mail(policy, w, event, t, event_key, lead.key)
    event_view = {**event.data, "type": event.type}
    lead_view = dict(profile)
    email = profile.get("email")
    if isinstance(email, str) and "@" in email:
        lead_view["email_domain"] = email.rsplit("@", 1)[1]
    counts = _counts(policy, history, t) if policy.counts else {}
    inactive_for = t - (last_activity if last_activity is not None else lead.created)
    contributions = lead.contributions
    plain: dict[str, Any] = {"inactive_for": inactive_for}
    projections, plans = policy.projections, policy.plans

    def sources(scores: dict[str, Any]) -> tuple[dict[str, Any], ...]:
        """What rules read, the working lead as it is now (rules.projection reads from them)."""
        plain["state"], plain["handoff_open"] = w.state, w.handoff_open
        plain["track"] = w.track.name if w.track else ""
        plain["in_state_for"] = t - w.state_since
        return lead_view, event_view, w.facts, counts, plain, scores

    def snapshot(phase: str, scores: dict[str, Any]) -> dict[str, Any]:
        """The values of the fields this phase's rules read."""
        return projections[phase].values(*sources(scores))

    def answer(phase: str, key: Hashable, body: Callable[[], str]) -> list[str]:
        """The names of the phase's rules that a fact matches (its key, its engine text)."""
        projection = projections[phase]
        known = projection.memo.get(key)
        if known is None:
            if not policy.definitions[phase]:
                return []
            engine.may_ask()
            handle = policy.handles[phase]
            assert handle is not None
            known = engine.match(handle, body())
            remember(policy, phase, key, known)
            engine.note((policy.sha, phase, key, known))
        aliases = plans[phase].aliases  # one engine rule per value of an indexed `in`
        return list(dict.fromkeys(aliases.get(n, n) for n in known)) if aliases else list(known)

    def match(phase: str, values: dict[str, Any]) -> list[str]:
        projection = projections[phase]
        return answer(phase, projection.key(values), lambda: projection.body(values))

    stage = projections["stage"]

    def look() -> tuple[list[str], Callable[[], dict[str, Any]]]:
        """The stage rules the lead as it is now matches, and (for those that fire) the values
        they read, made only when asked: most evaluations fire no stage rule."""
        read = sources(scores)
        names = answer("stage", stage.key_of(*read), lambda: stage.body(stage.values(*read)))
        return names, lambda: stage.values(*read)

    # Fit: a pure function of the fields fit rules read, which rarely change between a lead's
    # events; the lead remembers what matched for which values, and asks the engine again only
    # when they differ.
    # The key is made of the values themselves (their repr tells 1, 1.0, "1" and True apart):
    # encoding them for the engine only to hash the text cost as much as a match.
    fit_values = snapshot("fit", {})
    fit_key = _fit_key(policy, fit_values)
    fit_names = lead.fit_rules if fit_key == lead.fit_key else match("fit", fit_values)
    rules = policy.rules
    fit, bant, fit_firings = _fit(policy, fit_key, fit_names, fit_values)
    fired = w.fired
    fired += fit_firings
    if behaviour:  # engagement counts behaviour only
        engagement_values = snapshot("engagement", {})
        added = [rules[n] for n in match("engagement", engagement_values)]
        if added:
            contributions = [*contributions, *(
                Contribution(r.id, at, r.points, r.half_life, r.signal) for r in added)]
        for r in added:
            fired.append(Firing(r.id, "engagement", 0, _matched(r, engagement_values), r.summary, True))
    contributions, worth = compacted(contributions, t)
    levels = Levels(contributions, policy.caps, t, worth)
    scores = _scores(policy, levels, fit, len(bant))

    if w.track is not None:
        _advance_track(policy, w, t, event, lead.key)
    _chain(policy, look, w, t, event, event_key, lead.key)
    if event.type in ("sales_accept", "sales_reject"):
        w.handoff_open = False  # after the chain, so the hand-off rules saw it open
    if w.actions:
        _route_handoffs(policy, w, lead_view, scores)

    after = _copied(lead, {
        "state": w.state, "state_since": w.state_since, "profile": profile, "facts": w.facts,
        "fit": fit, "bant": bant, "fit_key": fit_key, "fit_rules": fit_names,
        "contributions": contributions, "history": history, "recent": recent,
        "last_activity": last_activity, "track": w.track, "handoff_open": w.handoff_open,
        "wakeups": w.wakeups, "mail_stop": w.mail_stop,
    })
    return built(Decision, {
        "policy": policy.name, "version": policy.version, "ruleset": policy.ruleset,
        "event_id": event.id, "event_type": event.type, "at": now, "rejected": None,
        "state_before": lead.state, "state": w.state, "scores": built(Scores, dict(scores)),
        "fact_changes": w.fact_changes, "actions": w.actions, "fired": fired,
        "next_check_at": _next_check(policy, after, levels, scores, t), "story": w.story,
        "lead": after, "final": w.state in policy.final_states,
    })


_SCALARS = frozenset({str, int, bool, type(None)})


def remember(policy: CompiledPolicy, phase: str, key: Hashable, names: list[str]) -> None:
    """Remember the engine's answer for a phase's fact key (from this process's engine, or one
    an evaluator process learned: rules.engine.learning)."""
    _kept(policy.projections[phase].memo, key, names)


def _kept(memo: dict[Any, Any], key: Any, value: Any) -> None:
    """Put a value in one of a policy version's memos, which stay bounded: a worker meets new
    facts for months."""
    if len(memo) >= MEMO:
        memo.clear()
    memo[key] = value


def _fit_key(policy: CompiledPolicy, values: dict[str, Any]) -> str:
    """The digest that names the fit values (with the layout and the ruleset), remembered per
    policy version for values whose type and value say their repr: texts, integers, booleans,
    None and non-zero floats (0.0 and -0.0 are equal keys with two reprs); others are hashed."""
    held = tuple(values.values())
    memo_key: tuple[Any, ...] | None = None
    for v in held:
        kind = v.__class__
        if kind not in _SCALARS and (kind is not float or v == 0.0):
            break
    else:
        memo_key = (*held, *[v.__class__ for v in held])
        known = policy.fit_keys.get(memo_key)
        if known is not None:
            return known
    digest = hashlib.blake2b(f"{LAYOUT}\n{policy.ruleset}\n{held!r}".encode(), digest_size=12).hexdigest()
    if memo_key is not None:
        _kept(policy.fit_keys, memo_key, digest)
    return digest


def _fit(policy: CompiledPolicy, fit_key: str, names: list[str], values: dict[str, Any]
         ) -> tuple[float, list[str], list[Firing]]:
    """The fit score, BANT and the fit rules' firings of the fit values `fit_key` names:
    remembered per policy version, as most leads' events leave their fit as it was (the key
    names the values; the rules matched come with it). The firings are shared by the Decisions
    that report them, as their rules' effects always were: nothing changes a fit firing."""
    memo_key = (fit_key, *names)
    known = policy.fit_memo.get(memo_key)
    if known is not None:
        return known[0], list(known[1]), known[2]
    fit_rules = [policy.rules[n] for n in names]
    # an int 0 when none matched, as the evaluator has always said (the Decision's JSON shows it)
    fit: float = min(policy.fit_cap, sum(r.points for r in fit_rules))
    bant = sorted({r.bant for r in fit_rules if r.bant})
    firings = [Firing(r.id, "fit", 0, _matched(r, values), r.summary, True) for r in fit_rules]
    _kept(policy.fit_memo, memo_key, (fit, tuple(bant), firings))
    return fit, bant, firings


def _holds(profile: dict[str, Any], incoming: dict[str, Any]) -> bool:
    """Whether the profile already says all the incoming fields say, as merging them would
    leave it (the same type and value; the e-mail address as merging normalises it): most
    events carry only the address the lead already has."""
    for name, value in incoming.items():
        held = profile.get(name, _ABSENT)
        if name == "email" and isinstance(value, str):
            value = value.strip().lower()
        if held.__class__ is not value.__class__ or held != value:
            return False
    return True


_ABSENT = object()
_LEAD_FIELDS = frozenset(LeadState.model_fields)


def _profile_of(ref: LeadRef) -> dict[str, Any]:
    """`ref.profile()` (its fields, then its extras, none of them None), read without
    pydantic's serialiser: the values are the event's own, which nothing changes in place."""
    extra = ref.__pydantic_extra__
    fields = ref.__dict__
    if not extra:
        return {k: v for k, v in fields.items() if v is not None}
    return {k: v for k, v in (*fields.items(), *extra.items()) if v is not None}


def _copied(lead: LeadState, update: dict[str, Any]) -> LeadState:
    """`lead.model_copy(update=update)`, without pydantic's generic copy (a few us)."""
    copy = built(LeadState, {**lead.__dict__, **update})
    held = lead.__pydantic_fields_set__
    if len(held) != len(_LEAD_FIELDS):  # a lead validated from JSON without every field
        object.__setattr__(copy, "__pydantic_fields_set__", held | update.keys())
    return copy


def _chain(policy: CompiledPolicy, look: Callable[[], tuple[list[str], Callable[[], dict[str, Any]]]],
           w: _Work, t: float, event: Event, event_key: str, key: str) -> None:
    """Match, fire the first rule not fired yet, and again while rules change the lead. The
    values a firing records are those of its round: made at the round's first firing, before
    anything of the round changed the lead (a rule that changes it ends the round)."""
    fired: set[str] = set()
    chain: list[str] = []
    while True:
        progressed = False
        names, values_now = look()
        current: dict[str, Any] | None = None
        for name in names:
            if name in fired:
                continue
            fired.add(name)
            if current is None:
                current = values_now()
            rule = policy.rules[name]
            chain.append(rule.id)
            if len(chain) > policy.max_chain:
                raise ChainLimitError(
                    f"policy {policy.name} v{policy.version}: more than {policy.max_chain} rules "
                    f"chained on one {event.type} event ({' -> '.join(chain)}); raise "
                    "limits.max_chain or make a rule's effect end the chain")
            matched = _matched(rule, current)
            assert rule.effects is not None
            changed, summary = _apply(policy, w, rule.effects, rule.id,
                                      rule.description or rule.effects.reason, matched, t,
                                      event, event_key, key)
            w.fired.append(Firing(
                rule=rule.id, kind="handoff" if name.startswith("h") else "stage",
                priority=rule.priority, matched=matched, effects=summary, changed=changed))
            if changed:
                progressed = True
                break
        if not progressed:
            return


def _apply(policy: CompiledPolicy, w: _Work, fx: Effects, rule_id: str, why: str | None,
           matched: dict[str, Any], t: float, event: Event, event_key: str, key: str
           ) -> tuple[bool, dict[str, Any]]:
    """Apply one rule's effects to the working lead; report whether the snapshot changed."""
    changed = False
    summary: dict[str, Any] = {}
    target = "disqualified" if fx.disqualify else fx.transition
    if target and target != w.state:
        reason = fx.disqualify or fx.reason or why or f"rule {rule_id} fired"
        said = event.data.get("reason") if event.type in ("sales_reject", "sales_accept") else None
        if said:
            reason = f"{reason}: {said}"
        w.story.append(StoryEntry(
            at=iso(t), event_id=event.id, event_type=event.type, from_state=w.state,
            to_state=target, rule=rule_id, policy=policy.name, version=policy.version,
            why=reason, matched=matched))
        summary["transition"] = f"{w.state} -> {target}"
        w.state, w.state_since = target, t
        if w.track is not None and fx.track != w.track.name:
            _stop_track(w, f"{key}|{event_key}|{rule_id}")
        changed = True
    if fx.disqualify:
        w.actions.append(Action(kind="disqualify", key=f"{key}|disqualify|{event_key}",
                                                reason=fx.disqualify))
        changed = _set_fact(w, "disqualified_reason", fx.disqualify) or changed
    for name, value in fx.set.items():
        if _set_fact(w, name, value):
            summary.setdefault("set", {})[name] = value
            changed = True
    if fx.track and w.mail_stop and (w.track is None or w.track.name != fx.track):
        summary["track"] = f"{fx.track} not started: the lead {w.mail_stop}"
    elif fx.track and (w.track is None or w.track.name != fx.track):
        if w.track is not None:
            _stop_track(w, f"{key}|{event_key}|{rule_id}")
        w.track = TrackState(name=fx.track, started=t, step=0, origin=event_key)
        w.actions.append(Action(kind="start_track", key=f"{key}|track:{fx.track}@{event_key}",
                                                track=fx.track))
        summary["track"] = fx.track
        _advance_track(policy, w, t, event, key)
        changed = True
    if fx.stop_track and w.track is not None:
        summary["stop_track"] = w.track.name
        _stop_track(w, f"{key}|{event_key}|{rule_id}")
        changed = True
    if fx.send:
        content, ab = _chosen(policy, w, fx.send, partial(rule_send, rule_id), key, t, event)
        _send(policy, w, f"{key}|{event_key}|{rule_id}|{content}", content, ab_test=ab)
        summary["send"] = content
        if ab is not None:
            summary["ab_test"] = ab
    if fx.handoff is not None:
        if w.handoff_open:
            summary["handoff"] = "already open"
        else:
            spec = fx.handoff if not isinstance(fx.handoff, bool) else None
            # a queue the rule names is its own; otherwise routing picks one after the chain
            queue = spec.queue if spec and spec.queue else None
            sla = parse_duration(spec.sla) if spec and spec.sla else policy.handoff_sla
            w.handoff_open = True
            w.actions.append(Action(
                kind="create_handoff", key=f"{key}|handoff|{event_key}", queue=queue,
                sla_seconds=sla, escalate_to=policy.escalate_to, reason=why,
                breach_steps=list(policy.breach_steps)))
            summary["handoff"] = queue or ROUTED
            changed = True
    if fx.schedule:
        w.wakeups.append(t + parse_duration(fx.schedule))
        summary["schedule"] = fx.schedule
    return changed, summary


def _route_handoffs(policy: CompiledPolicy, w: _Work, lead_view: dict[str, Any], scores: dict[str, Any]
                    ) -> None:
    """Give each new hand-off without a queue of its own the queue routing picks, from the lead as
    the chain left it (a segment a rule set on the way counts)."""
    for action in w.actions:
        if action.kind != "create_handoff" or action.queue is not None:
            continue
        chosen = route(policy.routing, lead_view, w.facts, scores, w.state)
        action.queue = chosen.queue if chosen else (policy.handoff_queue or "sales")
        action.route = chosen.id if chosen else None
        for firing in w.fired:
            if firing.effects.get("handoff") == ROUTED:
                firing.effects["handoff"] = action.queue
                if chosen:
                    firing.effects["route"] = chosen.id


def _set_fact(w: _Work, name: str, value: Any) -> bool:
    if name in w.facts and w.facts[name] == value:
        return False
    w.facts[name] = value
    w.fact_changes[name] = value
    return True


def _stop_mail(policy: CompiledPolicy, w: _Work, event: Event, t: float, event_key: str, key: str) -> None:
    stop = mail_stop_of(event)
    if stop is None or w.mail_stop is not None:
        return
    w.mail_stop = stop
    rule_id = f"mail.{stop}"
    summary: dict[str, Any] = {"mail": stop}
    if w.track is not None:
        summary["stop_track"] = w.track.name
        _stop_track(w, f"{key}|{event_key}|{rule_id}")
    w.story.append(StoryEntry(
        at=iso(t), event_id=event.id, event_type=event.type, from_state=w.state, to_state=w.state,
        rule=rule_id, policy=policy.name, version=policy.version, why=MAIL_STOPS[stop]))
    w.fired.append(Firing(rule=rule_id, kind="track", priority=0, matched={"event.type": event.type},
                          effects=summary, changed=True))


def _chosen(policy: CompiledPolicy, w: _Work, send: Send, ab_of: Callable[[Variants], AbStep], lead: str,
            t: float, event: Event) -> tuple[str, str | None]:
    """The content a send names and, for an A/B test, the test's name: the variant is this
    lead's (rules.variants), and its story says which, whether or not the e-mail goes out."""
    if isinstance(send, str):
        return send, None
    ab = ab_of(send)
    content = ab.choose(lead)
    w.story.append(StoryEntry(
        at=iso(t), event_id=event.id, event_type=event.type, from_state=w.state, to_state=w.state,
        rule=None, policy=policy.name, version=policy.version, why=ab.told(content),
        matched={"ab_test": ab.name, "variant": content, "split": ab.shares()}))
    return content, ab.name


def _send(policy: CompiledPolicy, w: _Work, key: str, content: str, track: str | None = None,
          ab_test: str | None = None) -> None:
    """A send action; withheld (recorded, never sent) from a lead that stopped mail or gave no
    consent that the policy asks for."""
    withheld = None
    consent = policy.policy.nurture.requires_consent
    if w.mail_stop:
        withheld = f"the lead {w.mail_stop}"
    elif consent and w.profile.get(consent) is not True:
        withheld = f"no consent: lead.{consent} is not true"
    manners = policy.policy.delivery
    if manners is not None and (withheld is not None or content in manners.transactional):
        manners = None
    w.actions.append(Action(kind="send", key=key, track=track, content=content, withheld=withheld,
                            manners=manners, ab_test=ab_test))


def _stop_track(w: _Work, key: str) -> None:
    assert w.track is not None
    w.actions.append(Action(kind="stop_track", key=f"{key}|stop:{w.track.name}",
                                            track=w.track.name))
    w.track = None


def _advance_track(policy: CompiledPolicy, w: _Work, t: float, event: Event, key: str) -> None:
    """Send every step that is due; an exhausted track applies its `on_exhausted` effects."""
    if w.track is None:
        return
    track = policy.tracks.get(w.track.name)
    if track is None:  # the lead moved to a policy version without this track
        w.track = None
        return
    step = w.track.step
    while step < len(track.steps) and w.track.started + track.steps[step][0] <= t:
        content, ab = _chosen(policy, w, track.steps[step][1], partial(track_step, track.name, step), key, t,
                              event)
        _send(policy, w, f"{key}|track:{track.name}@{w.track.ref()}|step:{step}", content, track.name, ab)
        step += 1
    if step == w.track.step:
        return
    w.track = TrackState(name=track.name, started=w.track.started, step=step, origin=w.track.origin)
    if step < len(track.steps):
        return
    w.track = None
    rule_id = f"nurture.{track.name}.exhausted"
    summary: dict[str, Any] = {"exhausted": track.name}
    if track.on_exhausted is not None:
        _, more = _apply(policy, w, track.on_exhausted, rule_id,
                         track.on_exhausted.reason or f"nurture track {track.name} ran out",
                         {"track": track.name}, t, event, f"exhausted@{t:.3f}", key)
        summary.update(more)
    w.fired.append(Firing(rule=rule_id, kind="track", priority=0,
                                          matched={"track": track.name}, effects=summary,
                                          changed=True))


def _scores(policy: CompiledPolicy, levels: Levels, fit: float, bant: int) -> dict[str, float]:
    interest, intent = levels.interest, levels.intent
    total_engagement = min(policy.engagement_cap, interest + intent)
    return {
        "fit": round(fit, SCORE_DIGITS), "interest": round(interest, SCORE_DIGITS),
        "intent": round(intent, SCORE_DIGITS), "engagement": round(total_engagement, SCORE_DIGITS),
        "total": round(fit + total_engagement, SCORE_DIGITS),
        "bant": bant,
    }


def _remember(history: list[tuple[str, float, int]], kind: str, at: float, cutoff: float
              ) -> list[tuple[str, float, int]]:
    """Add one event to the per-minute counts, forgetting what no window can see any more."""
    bucket = at - at % BUCKET
    kept = [h for h in history if h[1] + BUCKET > cutoff]
    for i, (k, start, n) in enumerate(kept):
        if k == kind and start == bucket:
            kept[i] = (k, start, n + 1)
            return kept
    return [*kept[-MAX_HISTORY + 1:], (kind, bucket, 1)]


def _counts(policy: CompiledPolicy, history: list[tuple[str, float, int]], t: float) -> dict[str, Any]:
    out: dict[str, dict[str, int]] = {}
    for spec in policy.counts:
        since = t - spec.window
        n = sum(c for kind, at, c in history
                if at + BUCKET > since and (spec.type == "any" or kind == spec.type))
        out.setdefault(spec.type, {})[spec.key] = n
    return out


def _matched(rule: CompiledRule, values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for written, key in rule.fields:
        value = values.get(key)
        out[written] = round(value, 2) if isinstance(value, float) else value
    return out


def _next_check(policy: CompiledPolicy, lead: LeadState, levels: Levels,
                scores: dict[str, float], t: float) -> datetime | None:
    """When this lead next needs a `check` event: a track step, a time threshold a rule in
    its current state watches, a score falling below a watched level, or a scheduled wake-up."""
    times: list[float] = list(lead.wakeups)
    track = policy.tracks.get(lead.track.name) if lead.track is not None else None
    if lead.track is not None and track is not None and lead.track.step < len(track.steps):
        times.append(lead.track.started + track.steps[lead.track.step][0])
    for watch in policy.watching(lead.state):
        if watch.field == "inactive_for":
            base = lead.last_activity if lead.last_activity is not None else lead.created
            times.append(base + watch.value)
        elif watch.field == "in_state_for":
            times.append(lead.state_since + watch.value)
        else:
            when = levels.crossing_below(watch.field, watch.value, scores["fit"])
            if when is not None:
                times.append(when)
    future = [x for x in times if x > t]
    return datetime.fromtimestamp(min(future), timezone.utc) if future else None


def _rejected(policy: CompiledPolicy, lead: LeadState, event: Event, t: float, reason: str
              ) -> Decision:
    entry = StoryEntry(
        at=iso(t), event_id=event.id, event_type=event.type, from_state=lead.state,
        to_state=lead.state, rule=None, policy=policy.name, version=policy.version,
        why=f"rejected: {reason}", matched={})
    return Decision.model_construct(
        policy=policy.name, version=policy.version, ruleset=policy.ruleset, event_id=event.id,
        event_type=event.type, at=datetime.fromtimestamp(t, timezone.utc), rejected=reason,
        state_before=lead.state, state=lead.state,
        scores=built(Scores, _scores(policy, Levels(lead.contributions, policy.caps, t), lead.fit,
                                     len(lead.bant))),
        fact_changes={}, actions=[], fired=[], next_check_at=None, story=[entry], lead=lead,
        final=lead.state in policy.final_states)
