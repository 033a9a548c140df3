"""Scheduled sends: held until due, released by the sweeper, cancellable until sent, and
"09:00 in each recipient's local time"."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Delivery, Notification
from apps.notifications.relay import relay_sweep
from apps.notifications.services import local_due_time

pytestmark = pytest.mark.django_db

URL = "/api/v1/notifications"


def send(api: Any, **extra: Any) -> Any:
    body = {"recipients": [{"id": "paris", "email": "p@example.com", "timezone": "Europe/Paris"},
                           {"id": "tokyo", "email": "t@example.com", "timezone": "Asia/Tokyo"}],
            "template_id": "welcome", "variables": {"name": "x"}, **extra}
    return api.post(URL, body, format="json")


def test_local_send_time_gives_each_recipient_their_own_due_time(
    api: Any, email_template: Any, settings: Any
) -> None:
    settings.SCHEDULED_AT_MAX_AHEAD_DAYS = 365 * 100  # a fixed date, years ahead
    response = send(api, local_send_time="09:00", local_send_date="2031-03-01")
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "scheduled"
    due = {d.recipient.external_id: d.due_at for d in Delivery.objects.select_related("recipient")}
    assert due["paris"] == datetime(2031, 3, 1, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert due["tokyo"] == datetime(2031, 3, 1, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert Notification.objects.get().scheduled_at == due["tokyo"]  # the earliest


def test_local_send_time_without_a_date_is_the_next_occurrence() -> None:
    now = datetime(2030, 6, 1, 12, 0, tzinfo=ZoneInfo("UTC"))  # 14:00 in Paris
    assert local_due_time("Europe/Paris", time(9), None, now) == datetime(
        2030, 6, 2, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert local_due_time("Europe/Paris", time(15), None, now) == datetime(
        2030, 6, 1, 15, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert local_due_time("", time(9), date(2030, 6, 3), now) == datetime(
        2030, 6, 3, 9, 0, tzinfo=ZoneInfo("UTC"))


def test_a_local_time_already_past_for_someone_is_422(api: Any, email_template: Any) -> None:
    yesterday = (timezone.now() - timedelta(days=1)).date().isoformat()
    response = send(api, local_send_time="09:00", local_send_date=yesterday)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "schedule_in_past"
    assert Notification.objects.count() == 0


def test_local_time_and_scheduled_at_together_are_refused(api: Any, email_template: Any) -> None:
    at = (timezone.now() + timedelta(hours=2)).isoformat()
    response = send(api, local_send_time="09:00", scheduled_at=at)
    assert response.status_code == 422
    assert "local_send_time" in response.json()["error"]["fields"]
    assert send(api, local_send_date="2031-01-01").status_code == 400


def test_cancel_stops_what_has_not_been_sent(api: Any, email_template: Any) -> None:
    at = (timezone.now() + timedelta(hours=1)).isoformat()
    created = send(api, scheduled_at=at).json()
    response = api.put(f"{URL}/{created['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["counts"] == {"cancelled": 2}
    assert set(Delivery.objects.values_list("status", flat=True)) == {"cancelled"}
    assert relay_sweep().requeued == 0  # nothing is released later
    assert api.put(f"{URL}/{created['id']}/cancel").status_code == 409


def test_cancel_after_sending_is_409_and_another_clients_is_404(
    api: Any, email_template: Any, clean_sandbox: Any
) -> None:
    created = send(api).json()
    deliveries_dispatch(delivery_ids=[d["id"] for d in created["deliveries"]])
    response = api.put(f"{URL}/{created['id']}/cancel")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_cancellable"
    from rest_framework.test import APIClient

    from tests.factories import ClientFactory, api_key_for

    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(ClientFactory())}")
    assert other.put(f"{URL}/{created['id']}/cancel").status_code == 404


def test_a_due_scheduled_send_is_released_and_sent(api: Any, email_template: Any, clean_sandbox: Any) -> None:
    at = (timezone.now() + timedelta(minutes=5)).isoformat()
    created = send(api, scheduled_at=at).json()
    Delivery.objects.update(due_at=timezone.now() - timedelta(seconds=1),
                            lease_until=timezone.now() - timedelta(seconds=1))
    assert relay_sweep().released_scheduled == 2
    deliveries_dispatch(delivery_ids=[d["id"] for d in created["deliveries"]])
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
