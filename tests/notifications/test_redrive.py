"""Dead letters: failed deliveries are listed, re-driven by the API and the admin, and the
re-drive is on their timeline."""

from __future__ import annotations

from typing import Any

import pytest

from apps.notifications.dispatch import deliveries_claim, delivery_record_outcome
from apps.notifications.models import Delivery, Notification
from apps.notifications.providers.base import SendResult
from apps.notifications.services import notification_send
from tests.factories import ClientFactory, TemplateFactory

pytestmark = pytest.mark.django_db


def failed_notification(client: Any, *emails: str) -> Notification:
    TemplateFactory(client=client, key=f"t{Notification.objects.count()}")
    notification = notification_send(
        client=client, template_id=f"t{Notification.objects.count()}", variables={"name": "x"},
        recipients=[{"id": e.split("@")[0], "email": e} for e in emails],
    ).notification
    for delivery in notification.deliveries.all():
        attempt = deliveries_claim(delivery_ids=[str(delivery.id)])[str(delivery.id)]
        delivery_record_outcome(delivery_id=str(delivery.id), attempt=attempt,
                                result=SendResult.permanent("sendgrid", "http_500", "boom"))
    from apps.notifications.status import notifications_refresh_status

    notifications_refresh_status(notification_ids=[notification.id])
    notification.refresh_from_db()
    return notification


def test_failed_notifications_are_listed_by_status(api: Any, client_tenant: Any) -> None:
    notification = failed_notification(client_tenant, "a@example.com")
    results = api.get("/api/v1/notifications", {"status": "failed"}).json()["results"]
    assert [r["id"] for r in results] == [str(notification.id)]


def test_retry_failed_redrives_with_a_fresh_budget_and_records_it(
    api: Any, client_tenant: Any, django_capture_on_commit_callbacks: Any
) -> None:
    notification = failed_notification(client_tenant, "a@example.com", "b@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/admin/retry-failed", {"notification_id": str(notification.id)},
                            format="json")
    assert response.status_code == 202
    assert response.json() == {"redriven": 2}
    for delivery in notification.deliveries.all():
        assert (delivery.status, delivery.attempts) == ("queued", 0)
        event = delivery.events.get(event="redriven")
        assert event.detail["actor"].startswith("api_key:")
        assert event.detail["previous_error"] == "http_500"
    notification.refresh_from_db()
    assert notification.status == "pending"


def test_retry_failed_never_touches_another_clients_deliveries(api: Any, client_tenant: Any) -> None:
    theirs = failed_notification(ClientFactory(), "x@example.com")
    assert api.post("/api/v1/admin/retry-failed", {}, format="json").json() == {"redriven": 0}
    assert set(theirs.deliveries.values_list("status", flat=True)) == {"failed"}


def test_retry_failed_validates_its_body(api: Any) -> None:
    response = api.post("/api/v1/admin/retry-failed", {"delivery_ids": ["nope"], "limit": 0}, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"delivery_ids[0]", "limit"}


def test_admin_action_redrives_failed_deliveries(admin_client: Any, client_tenant: Any) -> None:
    notification = failed_notification(client_tenant, "a@example.com")
    delivery = notification.deliveries.get()
    admin_client.post("/admin/notifications/delivery/",
                      {"action": "redrive", "_selected_action": [str(delivery.id)]})
    delivery.refresh_from_db()
    assert delivery.status == "queued"
    assert delivery.events.get(event="redriven").detail["actor"] == "admin:admin"
    assert Delivery.objects.filter(status="failed").count() == 0
