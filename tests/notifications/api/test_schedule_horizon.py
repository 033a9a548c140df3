"""scheduled_at at most SCHEDULED_AT_MAX_AHEAD_DAYS ahead (a year 9999 send is a typo): single,
bulk and segment sends refuse it with 422 `schedule_too_far_ahead` naming the field, and write
nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.notifications.models import Notification
from apps.segments.models import Segment
from tests.factories import RecipientFactory

pytestmark = pytest.mark.django_db


def send(recipient: str, **extra: Any) -> dict[str, Any]:
    return {"recipients": [{"id": recipient, "email": f"{recipient}@example.com"}],
            "template_id": "welcome", "variables": {"name": "A"}, **extra}


def test_a_send_in_the_year_9999_is_refused(api: APIClient, email_template: Any) -> None:
    response = api.post("/api/v1/notifications", send("a", scheduled_at="9999-12-31T00:00:00Z"),
                        format="json")

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "schedule_too_far_ahead"
    assert list(error["fields"]) == ["scheduled_at"]
    assert not Notification.objects.exists()


def test_the_horizon_is_the_setting(api: APIClient, email_template: Any, settings: Any) -> None:
    settings.SCHEDULED_AT_MAX_AHEAD_DAYS = 10
    inside = (timezone.now() + timedelta(days=9)).isoformat()
    beyond = (timezone.now() + timedelta(days=11)).isoformat()

    assert api.post("/api/v1/notifications", send("a", scheduled_at=inside),
                    format="json").status_code == 202
    refused = api.post("/api/v1/notifications", send("b", scheduled_at=beyond), format="json")
    assert refused.status_code == 422
    assert refused.json()["error"]["fields"]["scheduled_at"] == ["Must be at most 10 days from now."]
    assert Notification.objects.count() == 1


def test_a_year_ahead_is_still_accepted(api: APIClient, email_template: Any) -> None:
    near_limit = (timezone.now() + timedelta(days=365)).isoformat()
    response = api.post("/api/v1/notifications", send("a", scheduled_at=near_limit),
                        format="json")
    assert response.status_code == 202


def test_a_bulk_item_too_far_ahead_is_named_and_nothing_is_written(
    api: APIClient, email_template: Any
) -> None:
    items = [send("a"), send("b", scheduled_at="9999-01-01T00:00:00Z"), send("c")]

    response = api.post("/api/v1/notifications/bulk", {"notifications": items}, format="json")

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "schedule_too_far_ahead"
    assert list(error["fields"]) == ["notifications[1].scheduled_at"]
    assert not Notification.objects.exists()


def test_invalid_fields_are_reported_before_the_horizon(
    api: APIClient, email_template: Any
) -> None:
    items = [send("a", scheduled_at="9999-01-01T00:00:00Z"), send("b", priority="urgent!")]

    response = api.post("/api/v1/notifications/bulk", {"notifications": items}, format="json")

    assert response.status_code == 400
    assert "notifications[1].priority" in response.json()["error"]["fields"]


def test_a_segment_send_too_far_ahead_is_refused(
    api: APIClient, client_tenant: Any, email_template: Any
) -> None:
    RecipientFactory(client=client_tenant, external_id="m1", email="m1@example.com")
    segment = Segment.objects.create(client=client_tenant, key="all", name="All", definition={})

    response = api.post(f"/api/v1/segments/{segment.id}/send",
                        {"template_id": "welcome", "variables": {"name": "A"},
                         "scheduled_at": "9999-01-01T00:00:00Z"}, format="json")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "schedule_too_far_ahead"
    assert not Notification.objects.exists()


def test_a_local_send_date_beyond_the_horizon_is_refused(api: APIClient, email_template: Any) -> None:
    response = api.post("/api/v1/notifications",
                        send("a", local_send_time="09:00", local_send_date="2099-01-01"),
                        format="json")

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "schedule_too_far_ahead"
    assert list(error["fields"]) == ["local_send_date"]
    assert not Notification.objects.exists()

    inside = (timezone.now() + timedelta(days=30)).date().isoformat()
    accepted = api.post("/api/v1/notifications",
                        send("b", local_send_time="09:00", local_send_date=inside), format="json")
    assert accepted.status_code == 202
