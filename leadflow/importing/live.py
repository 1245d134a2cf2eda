"""`--live`: imported leads started as live leads too, through the intake as any door sends
(`leadflow.intake.send_events`, door `import`). The outcome label stays in the archive only: no
policy reads it, and a lead cannot take it. Leadflow's own events that an export may hold (a sales
answer, a bounce, an SLA breach) are history a live lead makes for itself: they are not sent."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from leadflow import intake
from leadflow.importing.rows import Lead
from leadflow.settings import Settings
from rules.models import OUTCOME

SKIPPED = frozenset({OUTCOME, *intake.INTERNAL_EVENTS})


class LiveSender:
    """One client and one loop for the whole import; each batch of leads sent as it is archived."""

    def __init__(self, settings: Settings, store: Any) -> None:
        from leadflow.seen import SeenEvents
        from leadflow.temporal import connect

        self.settings, self.store = settings, store
        self.runner = asyncio.Runner()
        self.client = self.runner.run(connect(settings))
        self.seen = SeenEvents.of(settings)
        self.counts: Counter[str] = Counter()
        self.refused: list[dict[str, Any]] = []

    def send(self, leads: list[Lead]) -> None:
        raws = [e.model_dump(mode="json", exclude_none=True) for lead in leads for e in lead.events
                if e.type not in SKIPPED]
        for start in range(0, len(raws), intake.MAX_BATCH):
            part = raws[start:start + intake.MAX_BATCH]
            answers = self.runner.run(intake.send_events(self.client, self.settings, self.store, self.seen,
                                                         part, door="import"))
            for answer in answers:
                self.counts[answer.status] += 1
                if answer.status == "refused":
                    self.refused.append({"lead": answer.lead_id, "event": answer.event_id,
                                         "reason": answer.error})

    def close(self) -> None:
        self.seen.close()
        self.runner.close()

    def summary(self) -> dict[str, Any]:
        return {"accepted": self.counts["accepted"], "duplicate": self.counts["duplicate"],
                "refused": self.refused}
