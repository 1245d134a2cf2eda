"""The `deliver` local activity of lead and hand-off runs that began before deliveries were
real (when a send was a row in a local outbox). Their histories hold that local activity where
today's code starts a delivery activity, so such a run keeps calling it until its next
continue-as-new (workflow.patched("real-delivery") says which kind of run it is). It delivers
for real now, through the same code as send_email and post_webhook."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from temporalio import activity

from activities.delivery import DeliveryActivities, EmailRequest, WebhookRequest


class OutboxMessage(BaseModel):
    key: str
    lead: str
    kind: str
    payload: dict[str, Any] = Field(default_factory=dict)


class LegacyDelivery:
    def __init__(self, sends: DeliveryActivities) -> None:
        self.sends = sends

    # Answers None; the outbox era's answered true, and its histories hold that: a workflow decodes
    # the recorded answer by this annotation (workflows.delivery.legacy), so it takes both.
    @activity.defn(name="deliver")
    def deliver(self, message: OutboxMessage) -> bool | None:
        request = message.payload.get("request")
        if not isinstance(request, dict):  # a notice with no channel (disqualify, escalate)
            return None
        if message.kind == "send":
            self.sends.send_email(EmailRequest.model_validate(request))
        elif message.kind in ("handoff", "escalation"):
            self.sends.post_webhook(WebhookRequest.model_validate(request))
        return None
