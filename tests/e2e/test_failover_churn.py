"""SendGrid down, SMTP rate-limited: the failover sends everything through SMTP at SMTP's
rate, deferring each chunk the limiter cannot take once (behind the work already waiting), not
claiming it again every few hundred milliseconds."""

from __future__ import annotations

import collections
import os
from typing import Any

import pytest

from apps.notifications.models import Delivery, DeliveryEvent
from apps.notifications.services import notification_send
from tests.factories import ClientFactory, TemplateFactory
from tests.support.processes import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TOTAL = int(os.environ.get("CHURN_TOTAL", "400"))  # measured at 1,000 (docs/operations.md)


def test_failover_to_a_rate_limited_provider_defers_each_chunk_once(
    clean_sandbox: Any, start_worker: Any
) -> None:
    tenant = ClientFactory()
    TemplateFactory(client=tenant, key="welcome")
    clean_sandbox.control(provider="sendgrid", down=True)
    env = {"SMTP_RATE_PER_SECOND": os.environ.get("CHURN_SMTP_RATE", "25"), "DISPATCH_CHUNK_SIZE": "100"}
    start_worker(name="bulk-a", env=env)
    start_worker(name="bulk-b", env=env)
    notification = notification_send(
        client=tenant, template_id="welcome", variables={"name": "x"},
        recipients=[{"id": f"u{i}", "email": f"u{i}@example.com"} for i in range(TOTAL)],
    ).notification

    wait_for(lambda: Delivery.objects.filter(notification=notification, sent_at__isnull=False)
             .count() == TOTAL, timeout=150, message="all sent through SMTP")

    events = collections.Counter(DeliveryEvent.objects.filter(
        delivery__notification=notification).values_list("event", flat=True))
    per_delivery = collections.Counter(
        m["custom_args"]["notifyhub_delivery_id"] for m in clean_sandbox.messages()
        if "custom_args" in m)
    smtp = clean_sandbox.messages(provider="smtp")
    print(f"claims/delivery {events['claimed'] / TOTAL:.2f}, deferred events {events['deferred']}, "
          f"smtp messages {len(smtp)}, events {dict(events)}")
    assert events["claimed"] / TOTAL <= 3, dict(events)
    assert events["deferred"] <= 1.5 * TOTAL, dict(events)
    assert set(Delivery.objects.filter(notification=notification)
               .values_list("status", flat=True)) <= {"sent", "delivered"}
    assert len(smtp) == TOTAL
    assert all(count == 1 for count in per_delivery.values())
