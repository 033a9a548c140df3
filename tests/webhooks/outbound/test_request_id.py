"""Client webhooks carry the request id of the send that caused them (`X-Request-Id`), whichever
process changed the delivery: the worker that sent it (which may have picked the delivery up for
another request's task), the receipt callback that reported it delivered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from apps.audit.models import AuditLog
from apps.core.logging import request_id_var
from apps.notifications.models import Delivery, DeliveryStatus
from apps.notifications.receipts import ProviderEvent, delivery_receipts_apply
from apps.webhooks.models import WebhookEndpoint, WebhookMessage
from apps.webhooks.outbound.delivery import webhook_messages_deliver
from tests.sandbox.receiver import HttpReceiver

from .support import record_sent, send

pytestmark = pytest.mark.django_db


def api_send(api: Any, request_id: str) -> Delivery:
    response = api.post("/api/v1/notifications", {
        "recipients": [{"id": "ada", "email": "ada@example.com"}], "template_id": "welcome",
        "variables": {"name": "Ada"}}, format="json", HTTP_X_REQUEST_ID=request_id)
    assert response.status_code == 202
    return Delivery.objects.get(notification_id=response.json()["id"])


class Context:
    """A worker task or a callback request running under its own request id."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id

    def __enter__(self) -> None:
        self.token = request_id_var.set(self.request_id)

    def __exit__(self, *exc: object) -> None:
        request_id_var.reset(self.token)


def test_every_webhook_of_a_send_carries_its_request_id(
    api: Any, email_template: Any, endpoint: WebhookEndpoint, receiver: HttpReceiver,
) -> None:
    delivery = api_send(api, "order-1234-confirm")

    with Context("another-requests-task"):  # a worker that coalesced it into another's chunk
        record_sent(delivery, "SG-1")
    with Context("sendgrid-callback-req"):  # the receipt callback
        delivery_receipts_apply(events=[ProviderEvent(
            provider="sendgrid", event="delivered", status=DeliveryStatus.DELIVERED,
            occurred_at=datetime(2026, 5, 1, 12, tzinfo=UTC), delivery_id=str(delivery.id),
            provider_event_id="e1")])

    messages = WebhookMessage.objects.filter(notification_id=delivery.notification_id)
    assert sorted(messages.values_list("event_type", "request_id")) == [
        ("delivery.delivered", "order-1234-confirm"), ("delivery.sent", "order-1234-confirm"),
        ("notification.completed", "order-1234-confirm")]

    webhook_messages_deliver(message_ids=[str(m.id) for m in messages])
    requests = receiver.wait_for(3)
    assert [r.headers["X-Request-Id"] for r in requests] == ["order-1234-confirm"] * 3


def test_without_the_sends_audit_row_the_current_request_id_is_used(
    client_tenant: Any, email_template: Any, endpoint: WebhookEndpoint, receiver: HttpReceiver,
) -> None:
    delivery = send(client_tenant)  # a service call outside any request
    AuditLog.objects.filter(notification_id=delivery.notification_id).delete()  # retention

    with Context("relay-sweep-task-id"):
        record_sent(delivery)
    message = WebhookMessage.objects.get(event_type="delivery.sent")
    assert message.request_id == "relay-sweep-task-id"

    other = send(client_tenant, recipient="bob")
    AuditLog.objects.filter(notification_id=other.notification_id).delete()
    record_sent(other)  # no request id anywhere: no header
    bare = WebhookMessage.objects.get(event_type="delivery.sent", delivery_id=other.id)
    assert bare.request_id == ""
    webhook_messages_deliver(message_ids=[str(bare.id)])
    [request] = receiver.wait_for(1)
    assert "X-Request-Id" not in request.headers


def test_a_test_event_carries_the_request_id_that_asked_for_it(
    api: Any, endpoint: WebhookEndpoint, receiver: HttpReceiver,
) -> None:
    response = api.post(f"/api/v1/webhooks/{endpoint.id}/test", HTTP_X_REQUEST_ID="ping-1")
    assert response.status_code in (200, 201, 202), response.content
    message = WebhookMessage.objects.get(event_type="webhook.test")
    assert message.request_id == "ping-1"
    webhook_messages_deliver(message_ids=[str(message.id)])
    [request] = receiver.wait_for(1)
    assert request.headers["X-Request-Id"] == "ping-1"
