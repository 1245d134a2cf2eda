"""Policies and events for tests of the rules: the shipped policy, the smallest valid one, and
events at fixed times."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone

import pytest

from rules.compile import CompiledPolicy, compile_policy
from rules.models import Event, LeadRef
from rules.validate import PolicyInvalid, load_policy_bytes
from tests.support import ROOT

DEFAULT_POLICY = ROOT / "policies" / "lead-lifecycle.v1.yaml"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)

# The smallest valid policy; tests append what they exercise.
MINIMAL = """\
policy: mini
version: 1
owners: {marketing: [m@example.com], sales: [s@example.com]}
states: [captured, scored, nurturing, sales-ready, derailed]
rules:
  - {id: to-scored, when: {state: captured}, then: {transition: scored}}
  - {id: to-nurturing, when: {state: scored, event.type: page_view}, then: {transition: nurturing}}
  - {id: to-ready, when: {state: nurturing, event.type: demo_request}, then: {transition: sales-ready}}
  - {id: to-derailed, when: {state: nurturing, inactive_for: {gte: 30d}}, then: {transition: derailed}}
"""


def policy_from(text: str, name: str = "test.yaml") -> CompiledPolicy:
    return compile_policy(load_policy_bytes(textwrap.dedent(text).encode(), name))


def event(kind: str, at: datetime = T0, email: str = "ana@acme.example", **data) -> Event:
    profile = data.pop("lead", {})
    return Event(id=f"{kind}-{at.timestamp()}-{email}", type=kind, at=at,
                 lead=LeadRef(email=email, **profile), data=data)


# MINIMAL with a chain of three rules, each enabling the next within one evaluation
CHAIN = MINIMAL + """\
  - {id: r1, priority: 5, when: {state: nurturing, facts.a: {exists: false}}, then: {set: {a: 1}}}
  - {id: r2, priority: 5, when: {facts.a: 1, facts.b: {exists: false}}, then: {set: {b: 2}}}
  - {id: r3, priority: 5, when: {facts.b: 2}, then: {transition: sales-ready}}
"""


def problems(text: str | bytes) -> list[str]:
    """The problems a policy file is refused with (it must be refused)."""
    raw = text if isinstance(text, bytes) else textwrap.dedent(text).encode()
    with pytest.raises(PolicyInvalid) as err:
        load_policy_bytes(raw, "p.yaml")
    return [str(p) for p in err.value.problems]


def days(n: float) -> timedelta:
    return timedelta(days=n)


def default_policy() -> CompiledPolicy:
    return compile_policy(load_policy_bytes(DEFAULT_POLICY.read_bytes(), str(DEFAULT_POLICY)))


# The shipped policy with an A/B test of its welcome e-mail (the awareness track's first step):
# welcome-guide against welcome-checklist. Its own tests still name welcome-guide; tests of A/B
# runs read what the evaluator sent, not those.
WELCOME = "{after: 0d, send: welcome-guide}"
AB_WELCOME = ("welcome-guide", "welcome-checklist")


def ab_policy_text(split: str = "50, 50") -> str:
    shipped = DEFAULT_POLICY.read_text()
    assert WELCOME in shipped and "\ncontent: [welcome-guide," in shipped
    variants = f"{{variants: [{', '.join(AB_WELCOME)}], split: [{split}]}}"
    return shipped.replace(WELCOME, f"{{after: 0d, send: {variants}}}") \
        .replace("\ncontent: [welcome-guide,", "\ncontent: [welcome-guide, welcome-checklist,")
