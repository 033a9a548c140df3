"""`field__any=[…]` (apps/core/db/lookups.py): the same rows as `__in`, one statement text
whatever the number of values."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.notifications.models import Delivery
from apps.notifications.services import notification_send

pytestmark = pytest.mark.django_db


def _deliveries(client: Any, count: int) -> list[Delivery]:
    notification = notification_send(
        client=client, template_id="welcome", variables={"name": "Ada"},
        recipients=[{"id": f"a{i}", "email": f"a{i}@example.com"} for i in range(count)],
    ).notification
    return list(notification.deliveries.order_by("id"))


def test_it_finds_the_same_rows_as_in(client_tenant: Any, email_template: Any) -> None:
    deliveries = _deliveries(client_tenant, 3)
    wanted = [deliveries[0].id, str(deliveries[2].id), uuid.uuid4()]
    assert set(Delivery.objects.filter(id__any=wanted)) == set(
        Delivery.objects.filter(id__in=wanted)) == {deliveries[0], deliveries[2]}


def test_text_columns_and_empty_lists(client_tenant: Any, email_template: Any) -> None:
    delivery = _deliveries(client_tenant, 2)[0]
    Delivery.objects.filter(id=delivery.id).update(provider="sendgrid", provider_message_id="msg-1")
    assert list(Delivery.objects.filter(provider_message_id__any=["msg-1", "msg-2"])) == [delivery]
    assert not Delivery.objects.filter(provider_message_id__any=[]).exists()
    assert not Delivery.objects.filter(provider_message_id__any=["it's; -- not sql"]).exists()


def test_one_statement_text_whatever_the_count() -> None:
    with CaptureQueriesContext(connection) as few:
        list(Delivery.objects.filter(id__any=[uuid.uuid4()]).values_list("id"))
    with CaptureQueriesContext(connection) as many:
        list(Delivery.objects.filter(id__any=[uuid.uuid4() for _ in range(600)]).values_list("id"))
    # Client-side binding shows the values inline; with them taken out the texts are equal.
    def shape(sql: str) -> str:
        return sql.split("ANY(")[0]
    assert shape(few.captured_queries[0]["sql"]) == shape(many.captured_queries[0]["sql"])
    assert "IN (" not in many.captured_queries[0]["sql"]
