"""How any client names a lead's workflow without putting a raw e-mail into an id."""

from __future__ import annotations

import hashlib

from rules.models import LeadRef


def lead_key(ref: LeadRef) -> str:
    """`lead-` + the first 20 hex digits of SHA-256 of the trimmed, lower-cased e-mail
    (or of the external id when there is no e-mail)."""
    basis = (ref.email or "").strip().lower() or (ref.external_id or "").strip()
    if not basis:
        raise ValueError("an event's lead needs an email or an external_id")
    return "lead-" + hashlib.sha256(basis.encode("utf-8")).hexdigest()[:20]
