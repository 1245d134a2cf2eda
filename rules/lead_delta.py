"""A lead as what one evaluation changed of it: the evaluator sends the lead workflow the fields
that differ (JSON values, by name), the workflow puts them on the lead it holds. A lead carries
its profile and facts for months; most events change its scores' records, not those.

Equal is strict: a field counts as unchanged only when its value is the same object, or equal
with the same repr (1 and 1.0 and True are equal in Python, not in JSON), so the lead the
workflow rebuilds serialises as the evaluator's own did (tests/workflows/test_lead_delta.py)."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from rules.models import LeadState

_FIELDS: dict[str, TypeAdapter[Any]] = {
    name: TypeAdapter(info.annotation if info.annotation is not None else Any)
    for name, info in LeadState.model_fields.items()}


def lead_changes(before: LeadState | None, after: LeadState) -> dict[str, Any]:
    """The fields of `after` that differ from `before` (every field when there is none)."""
    if before is None:
        return after.model_dump(mode="json")
    prior = before.__dict__
    out: dict[str, Any] = {}
    for name, value in after.__dict__.items():
        old = prior.get(name)
        if old is value or (old == value and repr(old) == repr(value)):
            continue
        out[name] = _FIELDS[name].dump_python(value, mode="json")
    return out


def with_changes(before: LeadState | None, changes: dict[str, Any]) -> LeadState:
    """`before` with `changes` (from lead_changes) made; only the changed fields are read."""
    if before is None:
        return LeadState.model_validate(changes)
    return before.model_copy(update={name: _FIELDS[name].validate_python(value)
                                     for name, value in changes.items()})


__all__ = ["lead_changes", "with_changes"]
