"""Scheduled sends with a real worker and beat: released when due, never sent once cancelled,
and quiet-hour holds released when the window ends."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.notifications.models import Delivery
from tests.factories import ClientFactory, TemplateFactory, api_key_for
from tests.support.processes import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FAST_SWEEP = {"RELAY_SWEEP_INTERVAL_SECONDS": "1"}


@pytest.fixture
def api() -> APIClient:
    client = ClientFactory()
    TemplateFactory(client=client, key="welcome")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(client)}")
    return api


def send(api: APIClient, **extra: Any) -> str:
    response = api.post("/api/v1/notifications", {
        "recipients": [{"id": "ada", "email": "ada@example.com"}], "template_id": "welcome",
        "variables": {"name": "Ada"}, **extra}, format="json")
    assert response.status_code == 202, response.json()
    return str(response.json()["id"])


def test_a_scheduled_send_is_released_by_beat_when_due_and_a_cancelled_one_never_leaves(
    api: APIClient, clean_sandbox: Any, start_worker: Any
) -> None:
    due = (timezone.now() + timedelta(seconds=3)).isoformat()
    kept = send(api, scheduled_at=due)
    cancelled = send(api, scheduled_at=due)
    assert api.put(f"/api/v1/notifications/{cancelled}/cancel").status_code == 200
    start_worker(beat=True, env=FAST_SWEEP)

    assert Delivery.objects.get(notification_id=kept).status == "scheduled"
    wait_for(lambda: Delivery.objects.get(notification_id=kept).status == "delivered", timeout=40,
             message="the scheduled send delivered")
    delivery = Delivery.objects.select_related("notification").get(notification_id=kept)
    assert delivery.notification.scheduled_at is not None
    assert delivery.sent_at is not None and delivery.sent_at >= delivery.notification.scheduled_at
    time.sleep(1.5)
    assert Delivery.objects.get(notification_id=cancelled).status == "cancelled"
    assert len(clean_sandbox.messages(to="ada@example.com")) == 1


def test_a_quiet_hours_hold_is_released_when_the_window_ends(
    api: APIClient, clean_sandbox: Any, start_worker: Any
) -> None:
    api.put("/api/v1/recipients/ada", {"email": "ada@example.com", "timezone": "UTC"}, format="json")
    now = timezone.now()
    end = now + timedelta(seconds=90)  # the window ends 30 to 90 s from now (HH:MM granularity)
    response = api.put("/api/v1/preferences/ada", {"quiet_hours": {
        "start": (now - timedelta(minutes=5)).strftime("%H:%M"), "end": end.strftime("%H:%M"),
        "timezone": "UTC"}}, format="json")
    assert response.status_code == 200, response.json()
    start_worker(beat=True, env=FAST_SWEEP)
    notification_id = send(api, category="updates")

    from apps.notifications.models import DeliveryEvent

    held_event = wait_for(
        lambda: DeliveryEvent.objects.filter(delivery__notification_id=notification_id,
                                             event="held").first(),
        timeout=20, message="held for quiet hours")
    until = datetime.fromisoformat(held_event.detail["until"])
    assert until <= end.replace(second=0, microsecond=0) + timedelta(minutes=1)
    wait_for(lambda: Delivery.objects.get(notification_id=notification_id).status == "delivered",
             timeout=150, message="released after the quiet hours")
    delivery = Delivery.objects.get(notification_id=notification_id)
    assert delivery.sent_at is not None and delivery.sent_at >= until
    assert list(delivery.events.values_list("event", flat=True))[:4] == [
        "accepted", "claimed", "held", "released"]
