"""`field__any=[…]` (apps/core/db/lookups.py): the same rows as `__in`, one statement text
whatever the number of values."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection
from django.db.models import Q
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


def _generic_plan(queryset: Any) -> str:
    """The plan PostgreSQL caches for the queryset's statement once it is prepared
    (DB_PREPARE_THRESHOLD): planned without the parameters' values."""
    from psycopg import sql

    text, params = queryset.query.sql_with_params()
    numbers = iter(range(1, len(params) + 1))
    text = text.replace("%s", "{}").format(*(f"${next(numbers)}" for _ in params))
    raw = connection.connection
    literals = sql.SQL(", ").join(sql.Literal(p) for p in params).as_string(raw)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE generic_probe AS {text}")
        try:
            cursor.execute(f"EXPLAIN EXECUTE generic_probe({literals})")
            return "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("DEALLOCATE generic_probe")


def test_filled_lets_a_generic_plan_use_a_partial_index(client_tenant: Any,
                                                        email_template: Any) -> None:
    """A look-up by provider message id with `__filled` uses the partial index on filled ids
    (`delivery_provider_msg`) also once prepared; with `~Q(field="")` the '' is a parameter
    and the cached plan reads the whole table."""
    delivery = _deliveries(client_tenant, 1)[0]
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO notifications_delivery
               SELECT (jsonb_populate_record(d, jsonb_build_object(
                   'id', gen_random_uuid(), 'provider', 'sendgrid',
                   'provider_message_id', 'm' || i))).*
               FROM notifications_delivery d, generate_series(1, 3000) AS i WHERE d.id = %s""",
            [delivery.id])
        cursor.execute("ANALYZE notifications_delivery")
    filled = Delivery.objects.filter(provider="sendgrid", provider_message_id__filled=True,
                                     provider_message_id__any=["m1", "m2"])
    assert sorted(filled.values_list("provider_message_id", flat=True)) == ["m1", "m2"]
    assert "delivery_provider_msg" in _generic_plan(filled)
    parameter = Delivery.objects.filter(~Q(provider_message_id=""), provider="sendgrid",
                                        provider_message_id__any=["m1", "m2"])
    assert "delivery_provider_msg" not in _generic_plan(parameter)


def test_filled_matches_non_empty_values_only(client_tenant: Any, email_template: Any) -> None:
    first, second = _deliveries(client_tenant, 2)
    Delivery.objects.filter(id=first.id).update(provider_message_id="msg-1")
    assert list(Delivery.objects.filter(id__any=[first.id, second.id],
                                        provider_message_id__filled=True)) == [first]
    with pytest.raises(ValueError):
        list(Delivery.objects.filter(provider_message_id__filled=False))


def test_statements_planned_per_run_are_not_prepared(client_tenant: Any,
                                                     email_template: Any) -> None:
    """Inside `planned_per_run()` a statement run past DB_PREPARE_THRESHOLD is still not
    prepared (so never gets a cached generic plan); outside it, it is."""
    from apps.core.db.plans import planned_per_run

    delivery = _deliveries(client_tenant, 1)[0]

    def prepared() -> set[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            return {row[0] for row in cursor.fetchall()}

    marker = "SELECT id FROM notifications_delivery WHERE id = %s /* per run */"
    with planned_per_run():
        for _ in range(8):
            with connection.cursor() as cursor:
                cursor.execute(marker, [delivery.id])
    assert not any("per run" in s for s in prepared())
    assert connection.connection.prepare_threshold is not None
    for _ in range(8):
        with connection.cursor() as cursor:
            cursor.execute(marker, [delivery.id])
    assert any("per run" in s for s in prepared())
