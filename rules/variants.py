"""A/B tests of nurture content: a send that names variants (`send: {variants: [a, b], split:
[50, 50]}`) instead of one content id, and which variant a lead gets.

The choice is a pure function of the lead's id, the step's identity (a track's name and the
step's place in it, or a rule's id), the variants and their split: SHA-256 of the lead id and
the step's identity, mapped onto [0, 100), then onto the split's running total. No randomness and
no clock, so a lead gets the same variant on a retried workflow task, in a replay, when it is
evaluated again (a version that moves running leads), and in `policy simulate`, `diff`, `test`
and `explain`, which run the same evaluator. The point a lead lands on does not depend on the
split, so changing 50/50 to 70/30 moves only the leads between 50 and 70 from B to A."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rules.policy import Effects, Policy, Variants

SHARES = 100  # a split's shares are whole percentages


@dataclass(frozen=True)
class AbStep:
    """One send of a policy that is an A/B test."""

    name: str  # `awareness[0]` (a track's first step), or the id of the rule that sends
    seed: str  # the step's identity, hashed with the lead's id: never change its form
    variants: tuple[str, ...]
    split: tuple[int, ...]
    track: str | None = None
    step: int | None = None  # the step's place in its track, from 0 (as the YAML list counts)
    rule: str | None = None
    where: tuple[Any, ...] = ()  # its `send` in the policy file

    def choose(self, lead: str) -> str:
        return choose(lead, self.seed, self.variants, self.split)

    def shares(self) -> dict[str, int]:
        return dict(zip(self.variants, self.split, strict=True))

    def told(self, variant: str) -> str:
        """The lead's story line for the variant it got."""
        split = ", ".join(f"{v} {share}%" for v, share in zip(self.variants, self.split, strict=True))
        return f"A/B test {self.name}: {variant} (of {split})"

    def sent_by(self, key: str, content: str) -> bool:
        """Whether a delivery (its key, its content id) is one of this step's sends. The keys are
        rules.evaluate's: `<lead>|track:<track>@<start>|step:<i>` for a track's step,
        `<lead>|<event>|<rule>|<content>` for a rule's send."""
        if content not in self.variants:
            return False
        if self.track is not None:
            head, found, step = key.rpartition("|step:")
            return bool(found) and step == str(self.step) and f"|track:{self.track}@" in head
        return key.endswith(f"|{self.rule}|{content}")


def point(lead: str, seed: str) -> int:
    """Where a lead lands for a step, in [0, SHARES): the same lead and step, the same point."""
    digest = hashlib.sha256(f"{lead}\n{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") * SHARES >> 64


def choose(lead: str, seed: str, variants: tuple[str, ...], split: tuple[int, ...]) -> str:
    """The variant whose stretch of the split holds the lead's point."""
    at, total = point(lead, seed), 0
    for variant, share in zip(variants, split, strict=True):
        total += share
        if at < total:
            return variant
    return variants[-1]  # shares adding up to less than 100 (validation refuses them)


def track_step(track: str, step: int, send: Variants) -> AbStep:
    return AbStep(f"{track}[{step}]", f"track:{track}|step:{step}", tuple(send.variants), tuple(send.split),
                  track=track, step=step, where=("nurture", "tracks", track, "steps", step, "send"))


def rule_send(rule: str, send: Variants, where: tuple[Any, ...] = ()) -> AbStep:
    return AbStep(rule, f"rule:{rule}", tuple(send.variants), tuple(send.split), rule=rule, where=where)


def ab_steps(policy: Policy) -> list[AbStep]:
    """Every A/B test of a policy, in file order: its tracks' steps, then what its rules, its
    tracks' `on_exhausted` and its hand-off's answers send."""
    out: list[AbStep] = []
    for name, track in policy.nurture.tracks.items():
        for j, step in enumerate(track.steps):
            if isinstance(step.send, Variants):
                out.append(track_step(name, j, step.send))
    out.extend(rule_send(rule, send, where) for rule, send, where in _effect_sends(policy)
               if isinstance(send, Variants))
    return out


def _effect_sends(policy: Policy) -> Iterator[tuple[str, str | Variants, tuple[Any, ...]]]:
    """(rule id as the evaluator names it, send, where) of every effect that sends."""
    effects: list[tuple[str, Effects | None, tuple[Any, ...]]] = [
        (rule.id, rule.then, ("rules", i, "then")) for i, rule in enumerate(policy.rules)]
    effects += [(f"nurture.{name}.exhausted", track.on_exhausted, ("nurture", "tracks", name, "on_exhausted"))
                for name, track in policy.nurture.tracks.items()]
    if policy.handoff is not None:
        effects += [(f"handoff.{key}", getattr(policy.handoff, key), ("handoff", key))
                    for key in ("on_accept", "on_reject")]
    for rule, fx, where in effects:
        if fx is not None and fx.send is not None:
            yield rule, fx.send, (*where, "send")
