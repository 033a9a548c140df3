"""Support's searches use an index, not a sequential scan: with 20,000 analysed rows the
planner picks the recipient, notification and client indexes for a search in a date range (the
same queries the API and the admin run)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from apps.audit.models import AuditLog
from apps.audit.selectors import audit_logs_for_client, audit_search_q, notification_ids_for_request

from .conftest import new_client

pytestmark = pytest.mark.django_db

ROWS = 20_000
START = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def big_log() -> dict[str, Any]:
    clients = [new_client() for _ in range(20)]
    rng = random.Random(7)
    notification_ids = [uuid.uuid4() for _ in range(ROWS // 4)]
    actions = ["notification.send", "notification.cancel", "preference.opt_out", "delivery.redrive"]
    AuditLog.objects.bulk_create([
        AuditLog(created_at=START + timedelta(minutes=13 * i), client=clients[i % 20],
                 actor_type="api_key", actor_id=str(i % 50), action=actions[i % 4],
                 recipient_external_id=f"user_{rng.randrange(ROWS // 2)}",
                 notification_id=notification_ids[i // 4], request_id=f"req-{i // 4}",
                 changes={"n": i})
        for i in range(ROWS)
    ], batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_auditlog")
    return {"client": clients[3], "notification_id": notification_ids[1234]}


def plan(queryset: Any) -> str:
    """EXPLAIN of the page query (ORDER BY created_at DESC, id DESC LIMIT 51, as the API and
    the admin paginate)."""
    return str(queryset.order_by("-created_at", "-id")[:51].explain())


def assert_uses(text: str, index: str) -> None:
    print(text, end="\n\n")  # the evidence, shown with `pytest -s`
    assert index in text, text
    assert "Seq Scan" not in text, text


def test_search_by_recipient_in_a_date_range_uses_its_index(big_log: dict[str, Any]) -> None:
    in_range = AuditLog.objects.filter(created_at__gte=START + timedelta(days=30),
                                       created_at__lt=START + timedelta(days=60))
    assert_uses(plan(in_range.filter(recipient_external_id="user_42")), "audit_recipient_created")
    assert_uses(plan(in_range.filter(audit_search_q("recipient:user_42"))), "audit_recipient_created")


def test_search_by_notification_id_uses_its_index(big_log: dict[str, Any]) -> None:
    notification_id = big_log["notification_id"]
    in_range = AuditLog.objects.filter(created_at__gte=START, created_at__lt=START + timedelta(days=365))
    assert_uses(plan(in_range.filter(notification_id=notification_id)), "audit_notification")
    # The admin's bare search: notification OR object OR actor, each by its own index.
    text = plan(in_range.filter(audit_search_q(str(notification_id))))
    assert_uses(text, "audit_notification")
    assert "audit_object_created" in text and "audit_actor_created" in text


def test_the_api_query_for_a_client_and_dates_uses_an_index(big_log: dict[str, Any]) -> None:
    queryset = audit_logs_for_client(client=big_log["client"], start=START + timedelta(days=100),
                                     end=START + timedelta(days=107))
    assert_uses(plan(queryset), "audit_client_created")
    by_recipient = audit_logs_for_client(client=big_log["client"], recipient="user_42",
                                         start=START, end=START + timedelta(days=365))
    assert_uses(plan(by_recipient), "audit_recipient_created")


def test_search_by_request_id_uses_its_index(big_log: dict[str, Any]) -> None:
    in_range = AuditLog.objects.filter(created_at__gte=START, created_at__lt=START + timedelta(days=365))
    assert_uses(plan(in_range.filter(audit_search_q("request:req-1234"))), "audit_request_created")
    # The bare search ORs it with the recipient, action and actor indexes.
    assert_uses(plan(in_range.filter(audit_search_q("req-1234"))), "audit_request_created")
    # The notification admin's search: the sends of a request (notification_ids_for_request).
    assert notification_ids_for_request("req-1234") == [big_log["notification_id"]]
    sends = AuditLog.objects.filter(request_id="req-1234", action="notification.send",
                                    notification_id__isnull=False).order_by("created_at")
    assert_uses(str(sends.values_list("notification_id")[:1000].explain()), "audit_request_created")


def test_the_outbox_finds_a_sends_request_id_through_the_notification_index(
    big_log: dict[str, Any],
) -> None:
    from apps.webhooks.outbound.outbox import _SEND_REQUEST_ID

    lookup = _SEND_REQUEST_ID.format(notification_id="%(notification_id)s::uuid")
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN SELECT {lookup}", {"notification_id": big_log["notification_id"],
                                                    "request_id": ""})
        text = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(f"SELECT {lookup}", {"notification_id": big_log["notification_id"],
                                            "request_id": ""})
        assert cursor.fetchone() == ("req-1234",)
    assert_uses(text, "audit_notification")
