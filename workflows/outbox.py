"""Writing to the outbox from a workflow."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.lead import OutboxMessage
    from workflows.types import DELIVER_RETRY


async def deliver(message: OutboxMessage) -> None:
    """A local activity: the write is a short insert, idempotent by key (a retry after a crash
    stores nothing twice), and runs in the same workflow task as the Decision that asked for
    it. As a regular activity each message cost a round trip through the server and an extra
    workflow task, and the lead's next event waited behind it (the p99 of bench/e2e.py).
    Delivery to SMTP or a CRM belongs to a relay that reads the outbox, not here."""
    await workflow.execute_local_activity("deliver", message, retry_policy=DELIVER_RETRY,
                                          start_to_close_timeout=timedelta(seconds=30))
