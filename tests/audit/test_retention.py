"""Retention: old notifications (with their deliveries and events) and old audit rows are
deleted in batches, recent ones are kept; a dry run deletes nothing and shows its progress; beat
runs both on the maintenance queue."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.audit.models import AuditLog
from apps.audit.retention import audit_logs_purge, notifications_purge
from apps.audit.tasks import audit_logs_retention_task, notifications_retention_task
from apps.notifications.models import Delivery, DeliveryEvent, Notification, Suppression
from apps.notifications.services import notification_send
from tests.factories import TemplateFactory

from .conftest import mine, new_client, rows

pytestmark = pytest.mark.django_db


def send(client: Any, count: int, *, days_ago: int) -> list[Notification]:
    made = [
        notification_send(client=client, template_id="welcome", variables={"name": "x"},
                          recipients=[{"id": f"r{i}-{j}", "email": f"r{i}-{j}@example.com"}
                                      for j in range(2)]).notification
        for i in range(count)
    ]
    Notification.objects.filter(id__in=[n.id for n in made]).update(
        created_at=timezone.now() - timedelta(days=days_ago))
    return made


@pytest.fixture
def two_clients(client_tenant: Any) -> list[Any]:
    other = new_client()
    for client in (client_tenant, other):
        TemplateFactory(client=client, key="welcome")
    return [client_tenant, other]


def test_old_notifications_go_with_their_deliveries_and_events(two_clients: list[Any]) -> None:
    old = [*send(two_clients[0], 3, days_ago=91), *send(two_clients[1], 2, days_ago=120)]
    recent = send(two_clients[0], 2, days_ago=89)
    delivery = old[0].deliveries.first()
    assert delivery is not None
    Suppression.objects.create(client=two_clients[0], channel="email", address="x@example.com",
                               reason="bounce", source_delivery=delivery)

    result = notifications_purge(batch_size=2, delivery_batch_size=3)

    assert (result.deleted, result.deliveries, result.complete) == (5, 10, True)
    assert result.batches == 3  # 3 notifications in batches of 2 for one client, 2 for the other
    assert set(mine(Notification.objects).values_list("id", flat=True)) == {n.id for n in recent}
    assert mine(Delivery.objects).count() == 4
    assert set(DeliveryEvent.objects.filter(delivery__client_id__in=[c.pk for c in two_clients])
               .values_list("delivery__notification_id", flat=True)) == {
        n.id for n in recent}
    assert mine(Suppression.objects).get().source_delivery is None  # the suppression stays
    [row] = rows("retention.notifications")
    assert row.actor_type == "system" and row.changes["notifications"] == 5


def test_a_dry_run_deletes_nothing_and_shows_progress(two_clients: list[Any]) -> None:
    send(two_clients[0], 3, days_ago=100)
    old_row = AuditLog.objects.create(action="notification.send", actor_type="system",
                                      created_at=timezone.now() - timedelta(days=3000))
    out = StringIO()
    call_command("retention", "--dry-run", "--batch-size", "2", stdout=out)
    output = out.getvalue()

    assert "Dry run" in output
    assert "batch 1: would delete 2 notifications, 4 deliveries" in output
    assert "batch 2: would delete 1 notifications, 2 deliveries" in output
    assert "notifications: would delete 3 (6 deliveries)" in output
    assert "audit log: would delete 1" in output
    assert mine(Notification.objects).count() == 3
    assert AuditLog.objects.filter(pk=old_row.pk).exists()
    assert rows("retention.notifications") == rows("retention.audit") == []


def test_the_command_deletes_and_is_recorded_as_the_command(two_clients: list[Any]) -> None:
    send(two_clients[0], 1, days_ago=100)
    out = StringIO()
    call_command("retention", "--only", "notifications", stdout=out)
    assert "notifications: deleted 1 (2 deliveries)" in out.getvalue()
    assert not mine(Notification.objects).exists()
    [row] = rows("retention.notifications")
    assert row.actor_display == "manage.py retention"


def test_old_audit_rows_are_deleted_and_recent_ones_kept(settings: Any) -> None:
    now = timezone.now()
    old = [AuditLog.objects.create(action="api_key.create", actor_type="system",
                                   created_at=now - timedelta(days=2556 + i)) for i in range(5)]
    kept = AuditLog.objects.create(action="api_key.create", actor_type="system",
                                   created_at=now - timedelta(days=2554))

    result = audit_logs_purge(batch_size=2)

    assert (result.deleted, result.batches) == (5, 3)
    assert not AuditLog.objects.filter(pk__in=[r.pk for r in old]).exists()
    assert AuditLog.objects.filter(pk=kept.pk).exists()
    [row] = rows("retention.audit")
    assert row.changes["rows"] == 5


def test_zero_days_keeps_everything(two_clients: list[Any], settings: Any) -> None:
    settings.NOTIFICATION_RETENTION_DAYS = 0
    settings.AUDIT_RETENTION_DAYS = 0
    send(two_clients[0], 1, days_ago=1000)
    assert notifications_purge().cutoff is None and audit_logs_purge().cutoff is None
    assert mine(Notification.objects).count() == 1


def test_a_run_out_of_time_stops_and_the_next_goes_on(two_clients: list[Any]) -> None:
    send(two_clients[0], 3, days_ago=100)
    stopped = notifications_purge(batch_size=1, time_budget=0)
    assert (stopped.deleted, stopped.complete) == (0, False)
    assert notifications_purge(batch_size=1).deleted == 3


def test_beat_runs_retention_on_the_maintenance_queue(two_clients: list[Any]) -> None:
    from celery_app import app

    send(two_clients[0], 1, days_ago=100)
    for name, task in (("notifications-retention", notifications_retention_task),
                       ("audit-logs-retention", audit_logs_retention_task)):
        entry = app.conf.beat_schedule[name]
        assert entry["task"] == task.name and entry["options"]["queue"] == "maintenance"
        assert task.queue == "maintenance"
        assert app.conf.task_routes[task.name] == {"queue": "maintenance"}
    assert notifications_retention_task.apply().get() == {
        "notifications": 1, "deliveries": 2, "complete": True}
    [row] = rows("retention.notifications")
    assert row.actor_display == "audit.notifications_retention_task"
