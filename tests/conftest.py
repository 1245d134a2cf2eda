from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from rules.compile import CompiledPolicy, compile_policy
from rules.models import Event, LeadRef
from rules.validate import load_policy_bytes

ROOT = Path(__file__).resolve().parent.parent
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


def days(n: float) -> timedelta:
    return timedelta(days=n)


@pytest.fixture(scope="session")
def default_policy() -> CompiledPolicy:
    return compile_policy(load_policy_bytes(DEFAULT_POLICY.read_bytes(), str(DEFAULT_POLICY)))
