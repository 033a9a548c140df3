"""Priorities with real workers: a worker takes its queues strictly in -Q order, so queued
`high` work overtakes `normal` work queued before it (celery_app.py, queue_order_strategy)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.notifications.models import Delivery
from tests.factories import ClientFactory, TemplateFactory, api_key_for
from tests.support.processes import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_queued_high_work_is_taken_before_normal_work_queued_earlier(
    clean_sandbox: Any, start_worker: Any
) -> None:
    tenant = ClientFactory()
    TemplateFactory(client=tenant, key="welcome")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(tenant)}")

    def send(name: str, priority: str) -> None:
        response = api.post("/api/v1/notifications", {
            "recipients": [{"id": name, "email": f"{name}@example.com"}],
            "template_id": "welcome", "variables": {"name": "x"}, "priority": priority,
        }, format="json")
        assert response.status_code == 202

    for i in range(5):
        send(f"normal{i}", "normal")
    for i in range(2):
        send(f"high{i}", "high")
    # One pool process, one message at a time: the order it takes them is the order they go.
    start_worker(queues="high,normal", concurrency=1)

    wait_for(lambda: Delivery.objects.filter(sent_at__isnull=False).count() == 7, timeout=60,
             message="all sent")
    sent = dict(Delivery.objects.values_list("priority", "sent_at").order_by("sent_at")[:2])
    assert list(sent) == ["high"]  # both first ones are high
    last_high = max(Delivery.objects.filter(priority="high").values_list("sent_at", flat=True))
    first_normal = min(Delivery.objects.filter(priority="normal").values_list("sent_at", flat=True))
    assert last_high < first_normal
