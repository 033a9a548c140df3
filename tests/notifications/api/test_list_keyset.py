"""GET /api/v1/notifications pages on the whole (created_at, id) key: notifications accepted in
the same instant (one bulk request) page like any others, forwards and backwards."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.notifications.models import Notification
from apps.notifications.services import notification_send

pytestmark = pytest.mark.django_db

URL = "/api/v1/notifications"


@pytest.fixture
def notifications(client_tenant: Any, email_template: Any) -> list[str]:
    """Twelve notifications, nine of them accepted at the very same instant, newest first."""
    made = [notification_send(client=client_tenant, template_id="welcome",
                              variables={"name": "x"},
                              recipients=[{"id": f"r{i}", "email": f"r{i}@example.com"}]
                              ).notification
            for i in range(12)]
    instant = timezone.now()
    Notification.objects.filter(id__in=[n.id for n in made[3:]]).update(created_at=instant)
    return [str(n.id) for n in Notification.objects.order_by("-created_at", "-id")]


def test_pages_forward_then_back_hold_every_notification_once(
    api: Any, notifications: list[str]
) -> None:
    pages = [api.get(URL, {"page_size": 5}).json()]
    while pages[-1]["next"]:
        pages.append(api.get(pages[-1]["next"]).json())
    assert [n["id"] for p in pages for n in p["results"]] == notifications
    assert pages[0]["previous"] is None and len(pages) == 3

    back = api.get(pages[-1]["previous"]).json()
    assert [n["id"] for n in back["results"]] == notifications[5:10]
    first = api.get(back["previous"]).json()
    assert [n["id"] for n in first["results"]] == notifications[:5]
    assert first["previous"] is None


def test_a_page_deep_in_a_tie_is_one_query_without_offset(
    api: Any, notifications: list[str]
) -> None:
    second = api.get(api.get(URL, {"page_size": 4}).json()["next"]).json()
    with CaptureQueriesContext(connection) as ctx:
        response = api.get(second["next"])
    assert [n["id"] for n in response.json()["results"]] == notifications[8:12]
    listing = [q["sql"] for q in ctx.captured_queries if "notifications_notification" in q["sql"]]
    assert len(listing) == 1 and "OFFSET" not in listing[0]


@pytest.mark.parametrize("cursor", ["garbage", "bnx4fDE", "cnwyMDI2LTAxLTAxfG5vdC1hLXV1aWQ"])
def test_a_cursor_not_handed_out_is_400(api: Any, cursor: str) -> None:
    response = api.get(URL, {"cursor": cursor})
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["cursor"]
