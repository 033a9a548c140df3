"""The admin's notification page stays one screen for a notification of any size."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.notifications.admin import TIMELINE_DELIVERIES
from apps.notifications.models import Notification
from apps.notifications.services import notification_send
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db


def send_to(client: Any, count: int) -> Notification:
    key = f"t{Notification.objects.count()}"
    TemplateFactory(client=client, key=key)
    return notification_send(
        client=client, template_id=key, variables={"name": "x"},
        recipients=[{"id": f"r{i:03d}", "email": f"r{i}@example.com"} for i in range(count)],
    ).notification


def page(admin_client: Any, notification: Notification) -> tuple[str, int]:
    with CaptureQueriesContext(connection) as ctx:
        response = admin_client.get(f"/admin/notifications/notification/{notification.id}/change/")
    assert response.status_code == 200
    return response.content.decode(), len(ctx.captured_queries)


def test_a_large_notification_shows_its_first_deliveries_and_links_to_the_rest(
    admin_client: Any, client_tenant: Any
) -> None:
    small = send_to(client_tenant, 2)
    large = send_to(client_tenant, TIMELINE_DELIVERIES + 15)

    page(admin_client, small)  # the first admin request loads the session and user
    small_page, small_queries = page(admin_client, small)
    large_page, large_queries = page(admin_client, large)

    assert large_queries == small_queries
    shown = [f"r{i:03d}" for i in range(TIMELINE_DELIVERIES + 15) if f">r{i:03d}<" in large_page]
    assert len(shown) == TIMELINE_DELIVERIES
    assert f"notification__id__exact={large.id}\">All deliveries" in large_page
    assert f"pending: {TIMELINE_DELIVERIES + 15}" in large_page
    assert f"all {TIMELINE_DELIVERIES + 15}" in large_page
    assert "All deliveries" not in small_page
