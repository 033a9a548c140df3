"""A delivery whose worker died on every attempt: the relay sweeper ends it `failed` /
`worker_lost`, and reports it like any other failure — the client's `delivery.failed` and
`notification.completed` webhooks, the Prometheus counter, the notification's status."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from apps.notifications.dispatch import deliveries_claim
from apps.notifications.models import Delivery
from apps.notifications.relay import relay_sweep
from apps.webhooks.models import WebhookMessage
from apps.webhooks.outbound.services import webhook_endpoint_create
from tests.webhooks.outbound.support import send

pytestmark = pytest.mark.django_db


def failed_count() -> float:
    return REGISTRY.get_sample_value(
        "notifyhub_deliveries_total", {"channel": "email", "provider": "none", "status": "failed"}
    ) or 0.0


def test_giving_up_on_a_lost_worker_sends_delivery_failed_and_completion_webhooks(
    client_tenant: Any, email_template: Any, settings: Any
) -> None:
    settings.DELIVERY_MAX_ATTEMPTS = 2
    endpoint = webhook_endpoint_create(client=client_tenant, url="https://hooks.example.com/h")
    delivery = send(client_tenant, metadata={"order": "ORD-9"})
    before = failed_count()

    reports = []
    for _ in range(2):  # the worker claims it, then dies (its lease runs out)
        deliveries_claim(delivery_ids=[str(delivery.id)])
        Delivery.objects.filter(id=delivery.id).update(
            lease_until=timezone.now() - timedelta(seconds=1))
        reports.append(relay_sweep())

    assert [r.gave_up for r in reports] == [0, 1]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == ("failed", "worker_lost")
    assert delivery.notification.status == "failed"
    messages = {m.event_type: m for m in WebhookMessage.objects.filter(endpoint=endpoint)}
    assert set(messages) == {"delivery.failed", "notification.completed"}
    data = messages["delivery.failed"].payload["data"]
    assert (data["delivery_id"], data["status"], data["error_code"]) == (
        str(delivery.id), "failed", "worker_lost")
    assert data["metadata"] == {"order": "ORD-9"}
    assert messages["notification.completed"].payload["data"]["status"] == "failed"
    assert failed_count() == before + 1


def test_a_requeue_is_not_a_failure(client_tenant: Any, email_template: Any) -> None:
    webhook_endpoint_create(client=client_tenant, url="https://hooks.example.com/h")
    delivery = send(client_tenant)
    deliveries_claim(delivery_ids=[str(delivery.id)])
    Delivery.objects.filter(id=delivery.id).update(lease_until=timezone.now() - timedelta(seconds=1))
    before = failed_count()

    assert relay_sweep().recovered_from_sending == 1

    assert not WebhookMessage.objects.exists()
    assert failed_count() == before
