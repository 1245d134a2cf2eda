"""How any client names a lead's workflow without putting a raw e-mail into an id, and how an
event without an id gets one."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from rules.models import Event, LeadRef


def lead_key(ref: LeadRef) -> str:
    """`lead-` + the first 20 hex digits of SHA-256 of the trimmed, lower-cased e-mail
    (or of the external id when there is no e-mail)."""
    basis = (ref.email or "").strip().lower() or (ref.external_id or "").strip()
    if not basis:
        raise ValueError("an event's lead needs an email or an external_id")
    return "lead-" + hashlib.sha256(basis.encode("utf-8")).hexdigest()[:20]


def with_id(event: Event) -> Event:
    """The event, with an id made from its content when it has none: identical id-less events
    are one event, and a scheduled check (whose time is its due time) keeps its id when it is
    evaluated again."""
    if event.id is not None:
        return event
    canon = json.dumps(event.model_dump(mode="json"), sort_keys=True)
    return event.model_copy(update={"id": "h-" + hashlib.sha256(canon.encode()).hexdigest()[:20]})


IDENTITY = ("email", "external_id")


def identity_of(profile: dict[str, Any]) -> dict[str, Any]:
    """The fields of a profile that name the person."""
    return {k: profile[k] for k in IDENTITY if profile.get(k)}


def readdress(event: dict[str, Any], identity: dict[str, Any]) -> dict[str, Any]:
    """The event as the survivor's of a merge: its lead's identity becomes the survivor's where
    the survivor has one (an e-mail, an external id); the profile facts it brought stay."""
    lead = {**(event.get("lead") or {}), **identity}
    return {**event, "lead": lead}


def merged_log(own: list[dict[str, Any]], other: list[dict[str, Any]], identity: dict[str, Any]
               ) -> list[dict[str, Any]]:
    """Two leads' events, one person's now, in the order they happened (the survivor's first
    where two coincide), each once."""
    seen: set[str] = set()
    both = []
    for event in [*own, *(readdress(e, identity) for e in other)]:
        if event.get("id") in seen:
            continue
        seen.add(str(event.get("id")))
        both.append(event)
    return sorted(both, key=lambda e: str(e.get("at") or ""))
