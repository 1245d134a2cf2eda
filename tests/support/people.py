"""Histories of one person under two addresses, as `leadflow events export` writes them."""

from __future__ import annotations

from typing import Any

HOT = {"role": "vp", "budget": 60000, "timeline": "now", "company_size": 300}


def merged_person() -> dict[str, list[dict[str, Any]]]:
    """A personal lead (`lead-p`) said to be a work lead (`lead-w`) too, three hours after its
    sign-up: the work lead had asked for a demo, so its hand-off is open when they merge; sales
    accept it the next morning."""
    personal, work = {"email": "ana@gmail.example"}, {"email": "ana@acme.example"}
    log = {
        "lead-p": [{"id": "p0", "type": "signup", "at": "2026-02-02T09:00:00Z", "lead": personal},
                   {"id": "p1", "type": "identify", "at": "2026-02-02T12:00:00Z", "lead": personal,
                    "data": {"same_as": work, "merge": {"lead_id": "lead-w", "running": True, **work}}},
                   {"id": "p2", "type": "sales_accept", "at": "2026-02-03T09:00:00Z", "lead": personal,
                    "data": {"by": "sam"}}],
        "lead-w": [{"id": "w0", "type": "signup", "at": "2026-02-02T10:00:00Z", "lead": {**work, **HOT}},
                   {"id": "w1", "type": "demo_request", "at": "2026-02-02T11:00:00Z", "lead": work}],
    }
    return {lead: [{**raw, "lead_id": lead} for raw in raws] for lead, raws in log.items()}
