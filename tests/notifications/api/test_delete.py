"""DELETE /api/v1/notifications/{id}."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connections, transaction

from apps.notifications.models import Delivery, DeliveryEvent, Notification

URL = "/api/v1/notifications"
BODY = {"recipients": [{"id": "a", "email": "a@example.com"}, {"id": "b", "email": "b@example.com"}],
        "template_id": "welcome", "variables": {"name": "x"}}


def create(api: Any) -> str:
    response = api.post(URL, BODY, format="json")
    assert response.status_code == 202
    return str(response.json()["id"])


@pytest.mark.django_db
def test_delete_removes_the_notification_its_deliveries_and_their_timelines(
    api: Any, email_template: Any
) -> None:
    notification_id = create(api)
    keep = create(api)

    response = api.delete(f"{URL}/{notification_id}")

    assert response.status_code == 204
    assert not Notification.objects.filter(id=notification_id).exists()
    assert not Delivery.objects.filter(notification_id=notification_id).exists()
    assert not DeliveryEvent.objects.filter(delivery__notification_id=notification_id).exists()
    assert Delivery.objects.filter(notification_id=keep).count() == 2
    assert api.get(f"{URL}/{notification_id}").status_code == 404
    assert api.delete(f"{URL}/{notification_id}").status_code == 404


@pytest.mark.django_db
def test_delete_is_refused_while_a_delivery_is_being_sent(api: Any, email_template: Any) -> None:
    notification_id = create(api)
    Delivery.objects.filter(notification_id=notification_id, recipient__external_id="a").update(
        status="sending")

    response = api.delete(f"{URL}/{notification_id}")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "notification_in_flight"
    assert Delivery.objects.filter(notification_id=notification_id).count() == 2


@pytest.mark.django_db
def test_finished_and_cancelled_notifications_can_be_deleted(api: Any, email_template: Any) -> None:
    notification_id = create(api)
    Delivery.objects.filter(notification_id=notification_id).update(status="delivered")
    assert api.delete(f"{URL}/{notification_id}").status_code == 204


@pytest.mark.django_db
def test_another_clients_notification_is_404_and_stays(
    api: Any, email_template: Any, other_api: Any
) -> None:
    theirs = create(other_api)

    response = api.delete(f"{URL}/{theirs}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert Notification.objects.filter(id=theirs).exists()


@pytest.mark.django_db(transaction=True)
def test_delete_does_not_wait_for_a_worker_holding_a_delivery(api: Any, email_template: Any) -> None:
    notification_id = create(api)
    locked, release = threading.Event(), threading.Event()

    def worker() -> None:
        try:
            with transaction.atomic():
                Delivery.objects.select_for_update().filter(notification_id=notification_id).first()
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=worker)
    thread.start()
    assert locked.wait(30)
    try:
        response = api.delete(f"{URL}/{notification_id}")
    finally:
        release.set()
        thread.join(30)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "notification_in_flight"
    assert api.delete(f"{URL}/{notification_id}").status_code == 204


@pytest.mark.django_db
def test_delete_is_audited(api: Any, email_template: Any) -> None:
    from apps.audit.models import AuditLog

    notification_id = create(api)
    api.delete(f"{URL}/{notification_id}")

    row = AuditLog.objects.get(action="notification.delete", notification_id=notification_id)
    assert str(row.notification_id) == notification_id
    assert row.changes["deliveries"] == 2
