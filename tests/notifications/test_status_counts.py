"""The counts per status stored on a notification (status.py) stay exact through sends,
receipts, cancels and re-drives, also for notifications large enough to be counted lazily."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.notifications import status as status_module
from apps.notifications.dispatch import deliveries_claim, delivery_record_outcome
from apps.notifications.models import DeliveryStatus, Notification
from apps.notifications.providers.base import SendResult
from apps.notifications.receipts import ProviderEvent, delivery_receipts_apply
from apps.notifications.redrive import deliveries_redrive, failed_deliveries
from apps.notifications.selectors import notification_counts, notification_status_counts
from apps.notifications.services import notification_cancel, notification_send
from apps.notifications.status import notifications_refresh_status, status_from_present
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db


def send_to(client: Any, count: int, **kwargs: Any) -> Notification:
    TemplateFactory(client=client, key=f"t{Notification.objects.count()}")
    return notification_send(
        client=client, template_id=f"t{Notification.objects.count()}", variables={"name": "x"},
        recipients=[{"id": f"r{i}", "email": f"r{i}@example.com"} for i in range(count)],
        **kwargs,
    ).notification


def claim_and_record(notification: Notification, result: SendResult, count: int) -> list[str]:
    ids = [str(i) for i in notification.deliveries.filter(status__in=["pending", "queued"])
           .order_by("created_at", "id").values_list("id", flat=True)[:count]]
    for delivery_id, attempt in deliveries_claim(delivery_ids=ids).items():
        delivery_record_outcome(delivery_id=delivery_id, attempt=attempt, result=result)
    notifications_refresh_status(notification_ids=[notification.id])
    return ids


def stored(notification: Notification) -> tuple[str, dict[str, int], bool]:
    notification.refresh_from_db()
    return notification.status, notification.counts, notification.counts_stale


def assert_exact(notification: Notification) -> None:
    notification.refresh_from_db()
    assert notification_counts(notification=notification) == \
        notification_status_counts(notification=notification)


def test_counts_follow_sends_receipts_and_cancel(client_tenant: Any) -> None:
    notification = send_to(client_tenant, 5)
    sent = claim_and_record(notification, SendResult.sent("sendgrid", "m"), 2)
    assert stored(notification)[:2] == ("processing", {"sent": 2, "pending": 3})

    delivery_receipts_apply(events=[
        ProviderEvent(provider="sendgrid", event="delivered", occurred_at=timezone.now(),
                      status=DeliveryStatus.DELIVERED, delivery_id=sent[0],
                      provider_event_id="e1"),
        ProviderEvent(provider="sendgrid", event="bounce", occurred_at=timezone.now(),
                      status=DeliveryStatus.BOUNCED, delivery_id=sent[1],
                      provider_event_id="e2"),
    ])
    assert stored(notification)[:2] == (
        "processing", {"delivered": 1, "bounced": 1, "pending": 3})

    notification_cancel(notification=notification)
    assert stored(notification)[:2] == (
        "partially_failed", {"delivered": 1, "bounced": 1, "cancelled": 3})
    assert_exact(notification)


def test_a_redrive_counts_its_deliveries_again(client_tenant: Any) -> None:
    notification = send_to(client_tenant, 3)
    claim_and_record(notification, SendResult.permanent("sendgrid", "http_500", "boom"), 3)
    assert stored(notification)[:2] == ("failed", {"failed": 3})

    deliveries_redrive(deliveries=failed_deliveries(notification_id=notification.id), actor="t")

    assert stored(notification)[:2] == ("pending", {"queued": 3})


def test_a_never_refreshed_notification_is_counted_on_read(client_tenant: Any) -> None:
    notification = send_to(client_tenant, 3)
    Notification.objects.filter(id=notification.id).update(counts={}, counts_at=None)
    notification.refresh_from_db()
    assert notification_counts(notification=notification) == {"pending": 3}


def test_large_notifications_are_counted_lazily_in_flight_and_exactly_at_the_end(
    client_tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(status_module, "COUNTS_EXACT_LIMIT", 3)
    monkeypatch.setattr(status_module, "COUNTS_INTERVAL_SECONDS", 3600)
    notification = send_to(client_tenant, 8)
    claim_and_record(notification, SendResult.sent("sendgrid", "m"), 1)
    assert stored(notification) == ("processing", {"sent": 1, "pending": 7}, False)

    # In flight and counted less than the interval ago: the status moves, the counts wait.
    claim_and_record(notification, SendResult.permanent("sendgrid", "http_500", "boom"), 3)
    assert stored(notification) == ("processing", {"sent": 1, "pending": 7}, True)
    # A reader sees the stored counts until the interval has passed, then counts itself.
    assert notification_counts(notification=notification) == {"sent": 1, "pending": 7}
    Notification.objects.filter(id=notification.id).update(
        counts_at=timezone.now() - timedelta(hours=2))
    assert_exact(notification)

    # Nothing in flight any more: counted exactly, whatever the interval.
    Notification.objects.filter(id=notification.id).update(counts_at=timezone.now())
    claim_and_record(notification, SendResult.sent("sendgrid", "m"), 4)
    assert stored(notification) == ("partially_failed", {"sent": 5, "failed": 3}, False)
    assert_exact(notification)


@pytest.mark.parametrize(("present", "expected"), [
    (set(), None),
    ({"pending", "queued", "scheduled"}, "pending"),
    ({"pending", "sent"}, "processing"),
    ({"retrying", "delivered"}, "processing"),
    ({"scheduled", "delivered"}, "scheduled"),
    ({"cancelled"}, "cancelled"),
    ({"cancelled", "delivered", "suppressed"}, "completed"),
    ({"failed", "bounced", "cancelled"}, "failed"),
    ({"failed", "sent"}, "partially_failed"),
])
def test_status_from_the_statuses_present(present: set[str], expected: str | None) -> None:
    assert status_from_present(present) == expected


@pytest.mark.parametrize(("present", "expected"), [
    ({"pending", "queued", "scheduled"}, "pending"),
    ({"pending", "sent"}, "processing"),
    ({"retrying", "delivered"}, "processing"),
    ({"scheduled", "delivered"}, "scheduled"),
    ({"cancelled"}, "cancelled"),
    ({"cancelled", "delivered", "suppressed"}, "completed"),
    ({"failed", "bounced", "cancelled"}, "failed"),
    ({"failed", "sent"}, "partially_failed"),
])
def test_the_stored_status_follows_the_same_rules(
    client_tenant: Any, present: set[str], expected: str
) -> None:
    """The refresh aggregates and stores in one statement (its rules written in SQL): the
    same status as `status_from_present`, and the counts."""
    notification = send_to(client_tenant, len(present))
    for delivery_id, status in zip(notification.deliveries.order_by("id")
                                   .values_list("id", flat=True), sorted(present), strict=True):
        notification.deliveries.filter(id=delivery_id).update(status=status)
    notifications_refresh_status(notification_ids=[notification.id])
    assert stored(notification) == (expected, dict.fromkeys(present, 1), False)
    notification.refresh_from_db()
    assert (notification.completed_at is not None) == (
        expected in ("completed", "partially_failed", "failed", "cancelled"))


def test_a_refresh_is_one_locking_read_and_one_write(client_tenant: Any) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    notification = send_to(client_tenant, 3)
    claim_and_record(notification, SendResult.sent("sendgrid", "m"), 3)
    with CaptureQueriesContext(connection) as queries:
        notifications_refresh_status(notification_ids=[notification.id])
    statements = [q["sql"].lstrip().split(None, 1)[0].upper() for q in queries.captured_queries]
    # (BEGIN/COMMIT, or a savepoint inside the test's transaction, around them)
    assert [s for s in statements if s not in ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")] == [
        "SELECT", "WITH"]


def test_a_large_notifications_status_probe_reads_index_entries_not_its_deliveries(
    client_tenant: Any,
) -> None:
    """The refresh of a large send in flight probes the statuses on the (notification, status)
    index, also before PostgreSQL's statistics know the send: as they would be in production,
    they say most notifications have one delivery. Filtering the send's deliveries instead
    read every one of them 11 times per refresh, under the notification's row lock."""
    from django.db import connection

    small = send_to(client_tenant, 1)
    large = send_to(client_tenant, 1)
    with connection.cursor() as cursor:
        # 3,000 more one-delivery notifications, then the statistics.
        cursor.execute(
            """WITH n AS (
                   INSERT INTO notifications_notification
                   SELECT (jsonb_populate_record(n, jsonb_build_object(
                       'id', gen_random_uuid(), 'idempotency_key', NULL))).*
                   FROM notifications_notification n, generate_series(1, 3000) WHERE n.id = %s
                   RETURNING id)
               INSERT INTO notifications_delivery
               SELECT (jsonb_populate_record(d, jsonb_build_object(
                   'id', gen_random_uuid(), 'notification_id', n.id))).*
               FROM notifications_delivery d, n WHERE d.notification_id = %s""",
            [small.id, small.id])
        # … in the statuses a real table holds: mostly finished.
        cursor.execute(
            """UPDATE notifications_delivery AS d SET status = s.status
               FROM (SELECT id, (ARRAY['delivered', 'sent', 'failed', 'bounced', 'suppressed',
                                       'cancelled', 'delivered', 'pending'])[
                                    1 + (row_number() OVER (ORDER BY id))::int %% 8] AS status
                     FROM notifications_delivery WHERE notification_id <> %s) AS s
               WHERE d.id = s.id""", [large.id])
        cursor.execute("ANALYZE notifications_delivery")
        # The large send's other 5,000 deliveries arrive after that.
        cursor.execute(
            """INSERT INTO notifications_delivery
               SELECT (jsonb_populate_record(d, jsonb_build_object('id', gen_random_uuid()))).*
               FROM notifications_delivery d, generate_series(1, 5000)
               WHERE d.notification_id = %s""", [large.id])
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + status_module.PRESENT_SQL,
                       [[str(large.id)], status_module.ALL_STATUSES])
        plan = cursor.fetchone()[0]
        cursor.execute(status_module.PRESENT_SQL, [[str(large.id)], status_module.ALL_STATUSES])
        assert cursor.fetchall() == [(str(large.id), "pending")]
    # 11 index descents read a few dozen pages; filtering the deliveries reads ~11 x 5,001.
    assert plan[0]["Plan"]["Shared Hit Blocks"] + plan[0]["Plan"]["Shared Read Blocks"] < 1000
