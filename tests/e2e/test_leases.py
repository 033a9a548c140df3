"""A live worker keeps the lease of a long batch: the sweeper never hands its rows to another
worker (which would send them twice)."""

from __future__ import annotations

import collections
from typing import Any

import pytest

from apps.notifications.models import Delivery, DeliveryEvent
from apps.notifications.services import notification_send
from tests.factories import ClientFactory, TemplateFactory
from tests.support.processes import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_batch_longer_than_its_lease_is_renewed_and_sent_once(
    clean_sandbox: Any, start_worker: Any
) -> None:
    tenant = ClientFactory()
    TemplateFactory(client=tenant, key="welcome")
    total = 12
    # 12 calls of 1.5 s, 2 at a time: the batch lasts ~9 s, the lease is 2 s.
    clean_sandbox.control(latency_ms=1500)
    start_worker(beat=True, concurrency=2, env={
        "DELIVERY_LEASE_SECONDS": "2", "DISPATCH_CONCURRENCY": "2",
        "RELAY_SWEEP_INTERVAL_SECONDS": "0.5", "DISPATCH_CHUNK_SIZE": "100"})
    notification = notification_send(
        client=tenant, template_id="welcome", variables={"name": "x"},
        recipients=[{"id": f"u{i}", "email": f"u{i}@example.com"} for i in range(total)],
    ).notification

    wait_for(lambda: Delivery.objects.filter(notification=notification, sent_at__isnull=False)
             .count() == total, timeout=90, message="all sent")

    per_delivery = collections.Counter(
        m["custom_args"]["notifyhub_delivery_id"] for m in clean_sandbox.messages())
    assert sorted(per_delivery.values()) == [1] * total
    assert not DeliveryEvent.objects.filter(delivery__notification=notification,
                                            event="requeued").exists()
    assert set(Delivery.objects.filter(notification=notification)
               .values_list("attempts", flat=True)) == {1}


def test_a_critical_send_slower_than_its_lease_is_renewed_and_sent_once(
    clean_sandbox: Any, start_worker: Any
) -> None:
    tenant = ClientFactory()
    TemplateFactory(client=tenant, key="welcome")
    clean_sandbox.control(latency_ms=4000)  # one call, twice the critical lease
    start_worker(beat=True, concurrency=2, env={
        "DELIVERY_LEASE_SECONDS_CRITICAL": "2", "RELAY_SWEEP_INTERVAL_SECONDS": "0.5"})
    notification = notification_send(
        client=tenant, template_id="welcome", variables={"name": "x"}, priority="critical",
        recipients=[{"id": "otp", "email": "otp@example.com"}]).notification

    wait_for(lambda: Delivery.objects.filter(notification=notification, sent_at__isnull=False)
             .exists(), timeout=60, message="sent")

    assert len(clean_sandbox.messages(to="otp@example.com")) == 1
    delivery = Delivery.objects.get(notification=notification)
    assert delivery.attempts == 1
    assert not delivery.events.filter(event="requeued").exists()
