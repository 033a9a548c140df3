"""The workers' batch statements read the rows of their batch by key, whatever the table's size
and however the planner estimates the batch: a plan that scans a whole table costs every batch
more as the table grows (docs/operations.md, "Eighth round of issue 8's work")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from apps.notifications import dispatch
from apps.notifications.models import Notification
from apps.notifications.providers.base import SendResult
from tests.notifications.test_status_counts import send_to

pytestmark = pytest.mark.django_db


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def scanned_whole(plan: dict[str, Any]) -> set[str]:
    """The tables a plan reads with a sequential scan."""
    return {n["Relation Name"] for n in nodes(plan["Plan"]) if n["Node Type"] == "Seq Scan"}


def grow(notification: Notification, copies: int) -> None:
    """`copies` more one-delivery notifications like this one, then the statistics: a table
    of a few thousand rows, as a new service has."""
    with connection.cursor() as cursor:
        cursor.execute(
            """WITH n AS (
                   INSERT INTO notifications_notification
                   SELECT (jsonb_populate_record(n, jsonb_build_object(
                       'id', gen_random_uuid(), 'idempotency_key', NULL))).*
                   FROM notifications_notification n, generate_series(1, %s) WHERE n.id = %s
                   RETURNING id)
               INSERT INTO notifications_delivery
               SELECT (jsonb_populate_record(d, jsonb_build_object(
                   'id', gen_random_uuid(), 'notification_id', n.id))).*
               FROM notifications_delivery d, n WHERE d.notification_id = %s""",
            [copies, notification.id, notification.id])
        cursor.execute("ANALYZE notifications_notification")
        cursor.execute("ANALYZE notifications_delivery")


def test_the_outcome_write_locks_and_updates_its_deliveries_by_key(client_tenant: Any) -> None:
    """A few outcomes against 3,000 deliveries: the planner takes the batch for 100 rows
    (any jsonb_to_recordset), which made two sequential scans of the deliveries look cheaper
    than the primary key. The write still does what it says."""
    notification = send_to(client_tenant, 3)
    grow(notification, 1000)
    ids = [str(i) for i in notification.deliveries.values_list("id", flat=True)]
    attempts = dispatch.deliveries_claim(delivery_ids=ids)
    now = timezone.now()
    rows = [dispatch.outcome_row(delivery_id=i, attempt=attempts[i],
                                 result=SendResult.sent("sendgrid", f"m-{i}"),
                                 now=now)[0] for i in ids]
    params = {"rows": json.dumps(rows, default=str), "now": now, "ids": ids}
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + dispatch._RECORD_SQL, params)
        plan = cursor.fetchone()[0][0]
    assert "notifications_delivery" not in scanned_whole(plan)
    assert set(notification.deliveries.values_list("status", flat=True)) == {"sent"}
    assert sorted(notification.deliveries.values_list("provider_message_id", flat=True)) == sorted(
        f"m-{i}" for i in ids)
