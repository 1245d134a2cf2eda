"""What the delivery ledger says, for people: the CLI's `leadflow deliveries`, the API's
/v1/deliveries and the ops page read it through here."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from leadflow.db.database import STATUSES, Database

KINDS = ("email", "handoff", "escalation")


class BadFilter(ValueError):
    pass


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def view(row: dict[str, Any]) -> dict[str, Any]:
    """One delivery as people and machines read it: times in ISO 8601, no lease internals."""
    return {
        "key": row["key"], "kind": row["kind"], "lead": row["lead"], "status": row["status"],
        "target": row["target"], "subject": row["subject"], "detail": row["detail"],
        "attempts": row["attempts"], "reclaims": row["reclaims"], "message_id": row["message_id"],
        "created_at": _iso(row["created_at"]), "updated_at": _iso(row["updated_at"]),
        "sent_at": _iso(row["sent_at"]),
    }


def listing(ledger: Database, *, lead: str | None = None, status: str | None = None, kind: str | None = None,
            limit: int = 200) -> list[dict[str, Any]]:
    if status and status not in STATUSES:
        raise BadFilter(f"status {status!r}: one of {', '.join(STATUSES)}")
    if kind and kind not in KINDS:
        raise BadFilter(f"kind {kind!r}: one of {', '.join(KINDS)}")
    if not 1 <= limit <= 10_000:
        raise BadFilter(f"limit {limit}: from 1 to 10000")
    return [view(r) for r in ledger.list(lead=lead, status=status, kind=kind, limit=limit)]
