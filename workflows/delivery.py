"""Starting deliveries from a workflow: regular activities (they talk to SMTP servers and
CRMs, may wait minutes for a retry, and run on whichever worker is free), never awaited by the
lead's event loop: a lead goes on taking events while its e-mail is on the way."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.delivery import DeliveryActivities, DeliveryResult, EmailRequest, WebhookRequest
    from activities.legacy import LegacyDelivery, OutboxMessage

# Runs that began before deliveries were real have a `deliver` local activity in their history
# where a delivery now starts; `workflow.patched(REAL_DELIVERY)` is False for them (see legacy()).
REAL_DELIVERY = "real-delivery"

# About eight hours of retries with backoff (1 s doubling to 10 min), then the ledger says failed.
DELIVERY_ATTEMPTS = 55
DELIVERY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                             maximum_interval=timedelta(minutes=10), maximum_attempts=DELIVERY_ATTEMPTS)


async def send_email(request: EmailRequest, timeout: float) -> DeliveryResult:
    return await _settled(request.key, workflow.execute_activity_method(
        DeliveryActivities.send_email, request.model_copy(update={"max_attempts": DELIVERY_ATTEMPTS}),
        start_to_close_timeout=timedelta(seconds=timeout), retry_policy=DELIVERY_RETRY))


async def post_webhook(request: WebhookRequest, timeout: float) -> DeliveryResult:
    return await _settled(request.key, workflow.execute_activity_method(
        DeliveryActivities.post_webhook, request.model_copy(update={"max_attempts": DELIVERY_ATTEMPTS}),
        start_to_close_timeout=timedelta(seconds=timeout), retry_policy=DELIVERY_RETRY))


async def _settled(key: str, delivering: Awaitable[DeliveryResult]) -> DeliveryResult:
    """How the delivery ended; one that Temporal gave up retrying, as failed."""
    try:
        return await delivering
    except ActivityError as err:  # the activity records the last attempt itself; this is the rest
        cause = err.cause.message if isinstance(err.cause, ApplicationError) else str(err.cause or err)
        return DeliveryResult(key=key, status="failed", detail=cause)


async def legacy(kind: str, key: str, lead: str, request: EmailRequest | WebhookRequest | None) -> None:
    """For a run from before deliveries were real: the local activity its history has here,
    which now delivers for real (activities.legacy)."""
    payload = {"request": request.model_copy(update={"max_attempts": DELIVERY_ATTEMPTS}).model_dump()} \
        if request is not None else {}
    await workflow.execute_local_activity_method(
        LegacyDelivery.deliver, OutboxMessage(key=key, lead=lead, kind=kind, payload=payload),
        start_to_close_timeout=timedelta(seconds=60), retry_policy=DELIVERY_RETRY)
