"""The acceptance pipeline (apps/notifications/bulk.py): a single send, a bulk send and a
segment send go through the same rules and the same writes; what one send costs in
statements; the API key cache; validation of 50,000 items."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AuditLog
from apps.clients.models import ApiKey
from apps.clients.quotas import deliveries_quota_consume
from apps.clients.services import api_key_revoke
from apps.core.crypto import TOKEN_PREFIX, decrypt
from apps.core.exceptions import ApplicationError
from apps.notifications.api.serializers import NotificationSendSerializer, send_body_validate
from apps.notifications.models import Delivery, DeliveryEvent, Notification
from apps.recipients.models import Recipient
from apps.segments.models import Segment
from apps.segments.services import segment_send
from tests.factories import RecipientFactory, api_key_for

from .helpers import api_with_key

pytestmark = pytest.mark.django_db

SEND = "/api/v1/notifications"
BULK = "/api/v1/notifications/bulk"


def body(recipient: Any, **extra: Any) -> dict[str, Any]:
    return {"recipients": [recipient], "template_id": "welcome", "variables": {"name": "A"},
            **extra}


def statements(queries: CaptureQueriesContext) -> list[str]:
    """The SQL a request ran, without the test's own savepoints (the view's transaction is
    a savepoint inside the test's)."""
    return [q["sql"] for q in queries.captured_queries
            if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]


# --- cost of one send ------------------------------------------------------------------------

def test_a_single_send_with_an_inline_recipient_is_three_statements(
    api: APIClient, email_template: Any
) -> None:
    """The recipient read and upsert (2), then the notification, delivery, event and both
    audit rows in one statement (1). The template and its active versions come from the
    process's copy, valid at the client's configuration generation the throttle read
    (test_template_cache.py); the API key from the in-process cache; nothing runs after the
    commit (the delivery stays `pending` for the worker's claim)."""
    api.post(SEND, body({"id": "warm", "email": "warm@example.com"}), format="json")

    with CaptureQueriesContext(connection) as queries:
        response = api.post(SEND, body({"id": "u1", "email": "u1@example.com"}), format="json")

    assert response.status_code == 202, response.json()
    sql = statements(queries)
    assert len(sql) == 3, sql
    assert sql[-1].startswith("WITH ")
    assert not any("templates_" in s for s in sql)
    assert not any("clients_apikey" in s for s in sql)
    assert not any(s.startswith("UPDATE") for s in sql)
    notification = Notification.objects.get(id=response.json()["id"])
    assert list(AuditLog.objects.filter(client_id=notification.client_id)
                .order_by("-id").values_list("action", "recipient_external_id")[:2]) == [
        ("notification.send", "u1"), ("recipient.upsert", "u1")]
    delivery = notification.deliveries.get()
    assert (delivery.status, delivery.address) == ("pending", "u1@example.com")
    assert DeliveryEvent.objects.filter(delivery=delivery, event="accepted").count() == 1


def test_an_idempotent_send_adds_four_statements_and_a_replay_is_two(
    api: APIClient, email_template: Any
) -> None:
    """The key's lock, its record, the notification it may name, and the new record written
    with the purge of expired ones; a replay reads the record and answers."""
    data = body({"id": "u1", "email": "u1@example.com"})
    # The key and the template's versions are cached.
    api.post(SEND, body({"id": "warm", "email": "warm@example.com"}), format="json")
    with CaptureQueriesContext(connection) as first:
        response = api.post(SEND, data, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    with CaptureQueriesContext(connection) as again:
        replay = api.post(SEND, data, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert response.status_code == replay.status_code == 202
    assert replay.json() == response.json()
    assert replay["Idempotent-Replayed"] == "true"
    assert len(statements(first)) == 3 + 4, statements(first)
    assert statements(first)[-1].startswith("WITH purged AS")
    assert len(statements(again)) == 2, statements(again)


def test_a_template_version_is_read_once_per_process_and_a_publish_is_seen_at_once(
    api: APIClient, email_template: Any
) -> None:
    from apps.templates.services import template_version_create

    api.get(SEND)  # the key is cached
    with CaptureQueriesContext(connection) as first:
        assert api.post(SEND, body({"id": "a", "email": "a@example.com"}), format="json").status_code == 202
    with CaptureQueriesContext(connection) as second:
        assert api.post(SEND, body({"id": "b", "email": "b@example.com"}), format="json").status_code == 202
    # The first reads the active versions' ids and the versions; the second neither (the
    # process's copy at the client's configuration generation, and its versions cache).
    assert len(statements(first)) == len(statements(second)) + 2
    assert any("templates_templateversion" in s for s in statements(first))
    assert not any("templates_" in s for s in statements(second))

    version = template_version_create(template=email_template, subject="New subject",
                                      text_body="Hi {{ name }}")
    response = api.post(SEND, body({"id": "c", "email": "c@example.com"}), format="json")
    assert response.status_code == 202
    notification = Notification.objects.get(id=response.json()["id"])
    assert notification.template_version_id == version.id


def test_a_known_recipient_costs_two_statements(
    api: APIClient, client_tenant: Any, email_template: Any
) -> None:
    RecipientFactory(client=client_tenant, external_id="known")
    api.post(SEND, body("known"), format="json")

    with CaptureQueriesContext(connection) as queries:
        response = api.post(SEND, body("known"), format="json")

    assert response.status_code == 202
    assert len(statements(queries)) == 2, statements(queries)


def test_a_large_send_is_copied_and_reads_back_like_a_small_one(
    api: APIClient, client_tenant: Any, email_template: Any, settings: Any
) -> None:
    """2,500 recipients: the upsert goes through a staging table and every table through COPY;
    the rows are the same as a small send's (encrypted addresses, events, audit rows). (Accepted
    in the request: the fan-out threshold is raised; tests/notifications/test_fanout.py.)"""
    settings.ACCEPT_FANOUT_MIN_DELIVERIES = 10**9
    RecipientFactory(client=client_tenant, external_id="r7", email="old@example.com",
                     locale="fr")
    recipients = [{"id": f"r{i}", "email": f"r{i}@example.com"} for i in range(2500)]

    response = api.post(SEND, {"recipients": recipients, "template_id": "welcome",
                               "variables": {"name": "A"}}, format="json")

    assert response.status_code == 202, response.json()
    deliveries = response.json()["deliveries"]
    assert [d["recipient"] for d in deliveries] == [f"r{i}" for i in range(2500)]
    assert Delivery.objects.filter(notification_id=response.json()["id"]).count() == 2500
    assert DeliveryEvent.objects.filter(event="accepted").count() == 2500
    updated = Recipient.objects.get(client=client_tenant, external_id="r7")
    assert (updated.email, updated.locale) == ("r7@example.com", "fr")  # locale kept
    assert Recipient.objects.filter(client=client_tenant).count() == 2500
    assert Recipient.objects.filter(email_hash=updated.email_hash).count() == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT address FROM notifications_delivery LIMIT 1")
        stored = cursor.fetchone()[0]
    assert stored.startswith(TOKEN_PREFIX) and decrypt(stored).endswith("@example.com")
    assert AuditLog.objects.filter(action="recipient.upsert", changes__count=2500).count() == 1
    assert AuditLog.objects.filter(action="notification.send").count() == 1



def test_copy_writes_every_value_as_an_insert_would(client_tenant: Any, email_template: Any) -> None:
    """The COPY text writer (bulk.copy_insert): escapes, JSON, NULLs, booleans, timestamps and
    encrypted columns read back as written."""
    from apps.core.db.rows import unsaved
    from apps.notifications.bulk import _copy_text, copy_insert

    now = timezone.now()
    version = email_template.active_version
    tricky = "back\\slash\ttab\nline\rcr \\N é ✓"
    notification = unsaved(Notification, {
        "client_id": client_tenant.id, "template_version_id": version.id,
        "idempotency_key": tricky, "variables": {"name": tricky, "n": 1.5, "none": None},
        "channels": ["email"], "metadata": {tricky: [True, None]}, "category": "a.b",
        "scheduled_at": now + timedelta(hours=1), "recipient_count": 3, "is_test": True,
        "status": "scheduled", "created_at": now,
    })
    recipient = RecipientFactory(client=client_tenant, external_id="x")
    delivery = unsaved(Delivery, {
        "notification_id": notification.id, "client_id": client_tenant.id,
        "recipient_id": recipient.id, "channel": "email", "priority": "normal",
        "status": "pending", "address": tricky, "due_at": None,
    })

    assert len(_copy_text(Notification, [notification], now)) == 1  # the text path, no fallback
    assert len(_copy_text(Delivery, [delivery], now)) == 1
    assert copy_insert(Notification, [notification], now) == 1
    assert copy_insert(Delivery, [delivery], now) == 1

    stored = Notification.objects.get(id=notification.id)
    assert (stored.idempotency_key, stored.variables, stored.metadata, stored.is_test,
            stored.scheduled_at, stored.created_at, stored.updated_at, stored.completed_at) == (
        tricky, {"name": tricky, "n": 1.5, "none": None}, {tricky: [True, None]}, True,
        now + timedelta(hours=1), now, now, None)
    assert Delivery.objects.get(id=delivery.id).address == tricky
    with connection.cursor() as cursor:
        cursor.execute("SELECT address FROM notifications_delivery WHERE id = %s", [delivery.id])
        assert cursor.fetchone()[0].startswith(TOKEN_PREFIX)


def test_copy_in_chunks_keeps_each_rows_own_values(
    client_tenant: Any, email_template: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """copy_insert writes chunk by chunk and reuses a column's text while the value is the
    same object as the row before: rows sharing a value, a value that changes back and forth,
    and a later chunk the text writer cannot format (psycopg writes the rest) all read back
    as given."""
    from apps.core.db.rows import unsaved
    from apps.notifications import bulk

    monkeypatch.setattr(bulk, "_COPY_CHUNK", 3)
    now = timezone.now()
    version = email_template.active_version
    shared_variables = {"name": "shared"}
    rows = []
    for i in range(8):
        variables = shared_variables if i % 3 else {"name": f"own {i}"}
        rows.append(unsaved(Notification, {
            "client_id": client_tenant.id, "template_version_id": version.id,
            "variables": variables, "channels": ["email"], "metadata": {},
            "category": "a" if i < 4 else "b", "recipient_count": i, "status": "pending",
            "created_at": now + timedelta(microseconds=i),
        }))

    # A type the text writer does not know (psycopg formats it), in the third chunk, after
    # two chunks written as text.
    rows[7].recipient_count = Decimal(7)
    assert bulk.copy_insert(Notification, rows, now) == 8

    stored = {n.id: n for n in Notification.objects.filter(id__in=[r.id for r in rows])}
    assert [(stored[r.id].variables, stored[r.id].category, stored[r.id].recipient_count,
             stored[r.id].created_at) for r in rows] == [
        ({"name": "shared"} if i % 3 else {"name": f"own {i}"}, "a" if i < 4 else "b", i,
         now + timedelta(microseconds=i)) for i in range(8)]


def test_a_large_write_checks_foreign_keys_as_it_copies(
    client_tenant: Any, email_template: Any
) -> None:
    """rows_insert's COPY path checks a table's foreign keys row by row when everything they
    point at is already written, and raises Django's IntegrityError (not psycopg's) for a
    row pointing nowhere; a table pointing at one written later in the call is checked at
    the commit and is accepted."""
    import uuid

    from django.db import IntegrityError, transaction

    from apps.core.db.rows import unsaved
    from apps.notifications import bulk

    now = timezone.now()
    version = email_template.active_version

    def notification(**values: Any) -> Any:
        return unsaved(Notification, {
            "client_id": client_tenant.id, "template_version_id": version.id, "variables": {},
            "channels": ["email"], "metadata": {}, "status": "pending", "created_at": now,
            **values})

    rows = [notification() for _ in range(bulk.SMALL_BATCH_ROWS)]
    rows.append(notification(template_version_id=uuid.uuid4()))  # points nowhere
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk.rows_insert([(Notification, rows)], now)
    assert not Notification.objects.exists()

    recipient = RecipientFactory(client=client_tenant, external_id="later")
    first = notification()
    deliveries = [unsaved(Delivery, {
        "notification_id": first.id, "client_id": client_tenant.id,
        "recipient_id": recipient.id, "channel": "email", "priority": "normal",
        "status": "pending", "address": "x@example.com", "due_at": None,
    }) for _ in range(bulk.SMALL_BATCH_ROWS)]
    with transaction.atomic():  # deliveries before their notification: checked at the commit
        bulk.rows_insert([(Delivery, deliveries), (Notification, [first])], now)
    assert Delivery.objects.filter(notification_id=first.id).count() == bulk.SMALL_BATCH_ROWS


# --- one pipeline ----------------------------------------------------------------------------

def test_single_bulk_and_segment_sends_refuse_a_broken_rule_alike(
    api: APIClient, client_tenant: Any, email_template: Any
) -> None:
    """The same rule, the same code and message; the field is named as each body names it."""
    RecipientFactory(client=client_tenant, external_id="m1", attributes={"plan": "pro"})
    without_variables = {"recipients": ["m1"], "template_id": "welcome"}

    single = api.post(SEND, without_variables, format="json").json()["error"]
    bulk = api.post(BULK, {"notifications": [body("m1"), without_variables]},
                    format="json").json()["error"]
    segment = Segment.objects.create(client=client_tenant, name="Pro", key="pro", definition={
        "all": [{"attribute": "plan", "op": "equals", "value": "pro"}]})
    with pytest.raises(ApplicationError) as raised:
        segment_send(client=client_tenant, segment=segment, template_id="welcome",
                     charge=lambda count: deliveries_quota_consume(client=client_tenant,
                                                                   count=count))

    assert single["code"] == bulk["code"] == raised.value.code == "missing_variables"
    assert single["message"] == bulk["message"] == raised.value.message
    assert list(single["fields"]) == ["variables.name"]
    assert list(bulk["fields"]) == ["notifications[1].variables.name"]
    assert list(raised.value.fields) == ["variables.name"]
    assert not Notification.objects.exists()


def test_unknown_recipients_are_named_by_their_position_in_a_single_and_a_bulk_send(
    api: APIClient, email_template: Any
) -> None:
    recipients = [{"id": "a", "email": "a@example.com"}, "ghost", "a", "ghost2"]

    single = api.post(SEND, {"recipients": recipients, "template_id": "welcome",
                             "variables": {"name": "x"}}, format="json")
    bulk = api.post(BULK, {"notifications": [body("a"), {
        "recipients": recipients, "template_id": "welcome", "variables": {"name": "x"}}]},
        format="json")

    assert single.status_code == bulk.status_code == 422
    assert list(single.json()["error"]["fields"]) == ["recipients[1]", "recipients[3]"]
    assert list(bulk.json()["error"]["fields"]) == [
        "notifications[1].recipients[1]", "notifications[1].recipients[3]"]
    assert not Recipient.objects.exists()  # the upsert rolled back with the refusal


def test_a_segment_send_writes_every_chunk_in_one_pass(
    client_tenant: Any, email_template: Any, settings: Any
) -> None:
    settings.MAX_RECIPIENTS_PER_REQUEST = 2
    segment = Segment.objects.create(client=client_tenant, name="All", key="all",
                                     definition={"all": []})
    for i in range(5):
        RecipientFactory(client=client_tenant, external_id=f"s{i}")

    with CaptureQueriesContext(connection) as queries:
        notifications = segment_send(
            client=client_tenant, segment=segment, template_id="welcome",
            variables={"name": "x"},
            charge=lambda count: deliveries_quota_consume(client=client_tenant, count=count))

    assert [n.recipient_count for n in notifications] == [2, 2, 1]
    inserts = [s for s in statements(queries) if "INSERT INTO" in s]
    assert len(inserts) == 1  # three notifications, their deliveries, events, audit rows
    assert AuditLog.objects.filter(action="notification.send").count() == 3


# --- the API key cache -----------------------------------------------------------------------

def test_a_cached_key_is_not_looked_up_again(client_tenant: Any, email_template: Any) -> None:
    api = api_with_key(api_key_for(client_tenant))
    api.get(SEND)

    with CaptureQueriesContext(connection) as queries:
        assert api.get(SEND).status_code == 200

    assert not any("clients_apikey" in s for s in statements(queries))


def test_a_revoked_key_is_refused_at_once(client_tenant: Any) -> None:
    raw = api_key_for(client_tenant)
    api = api_with_key(raw)
    assert api.get(SEND).status_code == 200  # cached now

    api_key_revoke(api_key=ApiKey.objects.get(client=client_tenant))

    assert api.get(SEND).status_code == 401


def test_a_deactivated_client_is_refused_at_once(client_tenant: Any) -> None:
    api = api_with_key(api_key_for(client_tenant))
    assert api.get(SEND).status_code == 200

    client_tenant.is_active = False
    client_tenant.save()

    assert api.get(SEND).status_code == 401


def test_a_key_revoked_by_another_process_is_refused_once_the_ttl_has_passed(
    client_tenant: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another web process revoked it (this one got no signal): refused within
    API_KEY_CACHE_SECONDS."""
    import apps.clients.selectors as selectors

    settings.API_KEY_CACHE_SECONDS = 5
    api = api_with_key(api_key_for(client_tenant))
    assert api.get(SEND).status_code == 200
    ApiKey.objects.filter(client=client_tenant).update(revoked_at=timezone.now())  # no signal
    assert api.get(SEND).status_code == 200  # still cached, within the TTL

    later = selectors.time.monotonic() + 5.1
    monkeypatch.setattr(selectors.time, "monotonic", lambda: later)

    assert api.get(SEND).status_code == 401


# --- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    body("a"),
    body(" a "),  # an id string is kept as given
    body({"id": " a ", "email": " A@Example.com ", "locale": "fr-CA", "timezone": "Europe/Paris",
          "phone": "", "attributes": {"plan": "pro"}, "ignored": 1}),
    {**body("a"), "channels": ["email", "email"], "priority": "high", "category": "news.x",
     "metadata": {"k": "v"}},
    {**body("a"), "template_id": "  welcome "},
])
def test_the_fast_path_validates_as_drf_does(data: dict[str, Any]) -> None:
    serializer = NotificationSendSerializer(data=data)
    assert serializer.is_valid(), serializer.errors
    assert send_body_validate(data) == dict(serializer.validated_data)


def test_50000_inline_recipients_with_bad_ones_name_each_index(
    api: APIClient, email_template: Any, settings: Any
) -> None:
    settings.MAX_RECIPIENTS_PER_REQUEST = 50_000
    recipients: list[Any] = [{"id": f"r{i}", "email": f"r{i}@example.com"} for i in range(50_000)]
    recipients[12]["email"] = "not-an-email"
    recipients[31_337] = {"email": "x@example.com"}
    recipients[49_999] = 42

    response = api.post(SEND, {"recipients": recipients, "template_id": "welcome"},
                        format="json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [
        "recipients[12].email", "recipients[31337].id", "recipients[49999]"]
    assert not Recipient.objects.exists()


def test_50000_bulk_items_with_bad_ones_name_each_index_and_write_nothing(
    api: APIClient, email_template: Any
) -> None:
    items: list[Any] = [body({"id": f"b{i}", "email": f"b{i}@example.com"}) for i in range(50_000)]
    items[3] = {**items[3], "template_id": ""}
    items[25_000] = {**items[25_000], "recipients": [{"id": "x", "phone": "123"}]}
    items[49_999] = {**items[49_999], "scheduled_at": "tomorrow"}

    response = api.post(BULK, {"notifications": items}, format="json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [
        "notifications[3].template_id", "notifications[25000].recipients[0].phone",
        "notifications[49999].scheduled_at"]
    assert not Notification.objects.exists()
    assert not Recipient.objects.exists()


def test_a_bulk_item_over_the_business_rules_is_named_after_validation_passes(
    api: APIClient, email_template: Any
) -> None:
    items = [body({"id": f"b{i}", "email": f"b{i}@example.com"}) for i in range(3)]
    items[2] = {**items[2], "scheduled_at": (timezone.now() - timedelta(days=1)).isoformat()}

    response = api.post(BULK, {"notifications": items}, format="json")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "schedule_in_past"
    assert list(response.json()["error"]["fields"]) == ["notifications[2].scheduled_at"]
