"""The outbox: status changes write one message per subscribed endpoint, in the transaction that
made them, and nothing (not even a query) when nobody listens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.notifications.dispatch import (
    _write_many,
    deliveries_claim,
    delivery_record_outcome,
    outcome_row,
)
from apps.notifications.models import Delivery, DeliveryStatus
from apps.notifications.providers.base import SendResult
from apps.notifications.receipts import ProviderEvent, delivery_receipts_apply
from apps.notifications.services import notification_send
from apps.webhooks.models import WebhookEndpoint, WebhookMessage
from apps.webhooks.outbound import outbox
from tests.factories import ClientFactory, TemplateFactory
from tests.sandbox.receiver import HttpReceiver

from .support import Published, make_endpoint, record_sent, send

pytestmark = pytest.mark.django_db


def receipt(delivery: Delivery, event: str, status: DeliveryStatus | None, event_id: str,
            **detail: Any) -> ProviderEvent:
    return ProviderEvent(provider="sendgrid", event=event, status=status,
                         occurred_at=datetime(2026, 5, 1, 12, 0, tzinfo=UTC),
                         delivery_id=str(delivery.id), provider_event_id=event_id, detail=detail)


def types(endpoint: WebhookEndpoint | None = None) -> list[str]:
    messages = WebhookMessage.objects.order_by("created_at", "event_type")
    if endpoint is not None:
        messages = messages.filter(endpoint=endpoint)
    return list(messages.values_list("event_type", flat=True))


@pytest.mark.usefixtures("subscriptions_cached")
def test_nobody_listening_costs_no_query(client_tenant: Any, email_template: Any) -> None:
    delivery = send(client_tenant)
    outbox.endpoint_subscriptions()  # the cache is warm, as in a running worker
    with CaptureQueriesContext(connection) as ctx:
        record_sent(delivery)
    assert not [q for q in ctx.captured_queries if "webhooks_" in q["sql"]]
    assert WebhookMessage.objects.count() == 0


def test_a_sent_delivery_writes_delivery_sent_with_the_payload(
    client_tenant: Any, email_template: Any, endpoint: WebhookEndpoint, published: Published,
    django_capture_on_commit_callbacks: Any,
) -> None:
    delivery = send(client_tenant, recipient="ada", metadata={"campaign_id": "123"})
    with django_capture_on_commit_callbacks(execute=True):
        record_sent(delivery, "SG-1")

    message = WebhookMessage.objects.get(event_type="delivery.sent")
    assert message.endpoint == endpoint and message.status == "pending"
    assert message.payload["type"] == "delivery.sent"
    assert datetime.fromisoformat(message.payload["timestamp"]) <= timezone.now()
    assert message.payload["data"] == {
        "delivery_id": str(delivery.id), "notification_id": str(delivery.notification_id),
        "recipient": "ada", "channel": "email", "status": "sent", "error_code": "",
        "error_message": "", "provider": "sendgrid", "provider_message_id": "SG-1",
        "metadata": {"campaign_id": "123"}, "test": False,
    }
    assert (message.delivery_id, message.notification_id) == (delivery.id, delivery.notification_id)
    # Published after commit; the sweeper takes over if that is lost.
    assert str(message.id) in published.ids()
    assert message.lease_until is not None and message.lease_until > timezone.now()


def test_events_for_a_backed_off_endpoint_are_written_parked_and_not_published(
    client_tenant: Any, email_template: Any, endpoint: WebhookEndpoint, published: Published,
    django_capture_on_commit_callbacks: Any,
) -> None:
    WebhookEndpoint.objects.filter(id=endpoint.id).update(
        failing_since=timezone.now(), next_probe_at=timezone.now() + timedelta(minutes=5),
        probe_failures=2)
    delivery = send(client_tenant, recipient="ada")
    with django_capture_on_commit_callbacks(execute=True):
        record_sent(delivery, "SG-1")
        outbox.webhook_completions_record(notification_ids=[delivery.notification_id])

    assert types() == ["delivery.sent", "notification.completed"]
    assert set(WebhookMessage.objects.values_list("status", "lease_until")) == {("pending", None)}
    assert published == []  # they wait for the endpoint's probe: no task each


def test_a_sent_delivery_also_completes_the_notification_once(
    client_tenant: Any, email_template: Any, endpoint: WebhookEndpoint,
) -> None:
    delivery = send(client_tenant)
    record_sent(delivery)
    outbox.webhook_completions_record(notification_ids=[delivery.notification_id])
    assert types() == ["delivery.sent", "notification.completed"]
    completed = WebhookMessage.objects.get(event_type="notification.completed")
    assert completed.payload["data"]["status"] == "completed"
    assert completed.payload["data"]["counts"] == {"sent": 1}
    assert completed.payload["data"]["metadata"] == {"order": "ORD-1"}


def test_the_event_filter_and_other_clients(
    client_tenant: Any, email_template: Any, receiver: HttpReceiver
) -> None:
    failures = make_endpoint(client_tenant, receiver.url("/failures"), ["delivery.failed"])
    everything = make_endpoint(client_tenant, receiver.url("/all"))
    stranger = make_endpoint(ClientFactory(), receiver.url("/stranger"))
    sent, failed = send(client_tenant, recipient="a"), send(client_tenant, recipient="b")

    record_sent(sent)
    attempt = deliveries_claim(delivery_ids=[str(failed.id)])[str(failed.id)]
    delivery_record_outcome(delivery_id=str(failed.id), attempt=attempt,
                            result=SendResult.permanent("sendgrid", "invalid_email", "No such address"))

    assert types(failures) == ["delivery.failed"]
    assert types(everything) == ["delivery.sent", "notification.completed", "delivery.failed"]
    assert types(stranger) == []
    data = WebhookMessage.objects.get(endpoint=failures).payload["data"]
    assert (data["status"], data["error_code"], data["error_message"]) == (
        "failed", "invalid_email", "No such address")


def test_a_retry_is_not_an_event(client_tenant: Any, email_template: Any, endpoint: Any) -> None:
    delivery = send(client_tenant)
    attempt = deliveries_claim(delivery_ids=[str(delivery.id)])[str(delivery.id)]
    delivery_record_outcome(delivery_id=str(delivery.id), attempt=attempt,
                            result=SendResult.retryable("sendgrid", "http_503", "busy"))
    assert types() == []


def test_receipts_write_delivered_bounced_and_engagement(
    client_tenant: Any, email_template: Any, endpoint: WebhookEndpoint,
) -> None:
    ada, bob = send(client_tenant, recipient="ada"), send(client_tenant, recipient="bob")
    record_sent(ada, "M1")
    record_sent(bob, "M2")
    assert types() == ["delivery.sent", "notification.completed"] * 2
    before = set(WebhookMessage.objects.values_list("id", flat=True))

    delivery_receipts_apply(events=[
        receipt(ada, "delivered", DeliveryStatus.DELIVERED, "e1"),
        receipt(ada, "opened", None, "e2"),
        receipt(ada, "clicked", None, "e3", url="https://example.com/a", useragent="UA"),
        receipt(bob, "bounced", DeliveryStatus.BOUNCED, "e4"),
    ])

    new = WebhookMessage.objects.exclude(id__in=before)
    by_type = {m.event_type: m.payload for m in new}
    assert set(by_type) == {"delivery.delivered", "delivery.opened", "delivery.clicked",
                            "delivery.bounced", "notification.completed"}
    assert by_type["delivery.delivered"]["timestamp"] == "2026-05-01T12:00:00+00:00"
    assert by_type["delivery.clicked"]["data"]["url"] == "https://example.com/a"
    assert by_type["delivery.clicked"]["data"]["recipient"] == "ada"
    assert by_type["delivery.bounced"]["data"]["status"] == "bounced"
    # ada's notification completed at `sent` already (and still is: no new completion);
    # bob's now ends failed with the bounce.
    completed = new.get(event_type="notification.completed")
    assert completed.notification_id == bob.notification_id
    assert completed.payload["data"]["status"] == "failed"

    # The same receipts again change nothing and write nothing.
    delivery_receipts_apply(events=[receipt(ada, "delivered", DeliveryStatus.DELIVERED, "e1"),
                                    receipt(bob, "bounced", DeliveryStatus.BOUNCED, "e4")])
    assert WebhookMessage.objects.count() == 4 + 5


def test_a_later_final_status_is_a_new_completion(
    client_tenant: Any, email_template: Any, endpoint: WebhookEndpoint,
) -> None:
    delivery = send(client_tenant)
    record_sent(delivery)
    delivery_receipts_apply(events=[receipt(delivery, "bounced", DeliveryStatus.BOUNCED, "b1")])
    statuses = [m.payload["data"]["status"]
                for m in WebhookMessage.objects.filter(event_type="notification.completed")
                .order_by("created_at")]
    assert statuses == ["completed", "failed"]


@pytest.mark.usefixtures("subscriptions_cached")
def test_disabled_and_deleted_endpoints_get_nothing(
    client_tenant: Any, email_template: Any, receiver: HttpReceiver
) -> None:
    disabled = make_endpoint(client_tenant, receiver.url("/d"))
    deleted = make_endpoint(client_tenant, receiver.url("/x"))
    outbox.endpoint_subscriptions()  # cached while both were enabled: the SQL still checks
    WebhookEndpoint.objects.filter(id=disabled.id).update(disabled_at=timezone.now())
    WebhookEndpoint.objects.filter(id=deleted.id).update(deleted_at=timezone.now())
    record_sent(send(client_tenant))
    assert WebhookMessage.objects.count() == 0


def test_the_outbox_commits_with_the_status_change(
    client_tenant: Any, email_template: Any, endpoint: WebhookEndpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One transaction: if writing the outbox fails, the status change is not recorded either
    (the delivery stays `sending`, and the relay sweeper hands it out again)."""
    delivery = send(client_tenant)
    attempt = deliveries_claim(delivery_ids=[str(delivery.id)])[str(delivery.id)]

    def broken(**kwargs: Any) -> int:
        raise RuntimeError("outbox down")

    monkeypatch.setattr(outbox, "webhook_events_record", broken)
    with pytest.raises(RuntimeError):
        delivery_record_outcome(delivery_id=str(delivery.id), attempt=attempt,
                                result=SendResult.sent("sendgrid", "M1"))
    delivery.refresh_from_db()
    assert delivery.status == "sending"
    assert not delivery.events.filter(event="sent").exists()


@pytest.mark.usefixtures("subscriptions_cached")
def test_subscriptions_are_cached_and_dropped_on_change(
    client_tenant: Any, receiver: HttpReceiver, django_assert_num_queries: Any,
) -> None:
    assert outbox.endpoint_subscriptions() == {}
    with django_assert_num_queries(0):
        assert outbox.endpoint_subscriptions() == {}
    make_endpoint(client_tenant, receiver.url("/a"), ["delivery.failed"])
    assert outbox.endpoint_subscriptions() == {str(client_tenant.id): ["delivery.failed"]}
    make_endpoint(client_tenant, receiver.url("/b"))
    assert outbox.endpoint_subscriptions() == {str(client_tenant.id): ["*", "delivery.failed"]}


@pytest.mark.usefixtures("subscriptions_cached")
def test_a_reader_racing_a_change_cannot_keep_the_cache_stale(
    client_tenant: Any, receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch,
) -> None:
    load = outbox._load_subscriptions

    def load_then_change() -> dict[str, list[str]]:
        before = load()  # this reader read the rows before the change committed
        make_endpoint(client_tenant, receiver.url("/new"))
        return before

    monkeypatch.setattr(outbox, "_load_subscriptions", load_then_change)
    assert outbox.endpoint_subscriptions() == {}
    monkeypatch.setattr(outbox, "_load_subscriptions", load)
    assert outbox.endpoint_subscriptions() == {str(client_tenant.id): ["*"]}


def test_many_deliveries_are_one_statement(
    client_tenant: Any, receiver: HttpReceiver, endpoint: WebhookEndpoint,
) -> None:
    TemplateFactory(client=client_tenant, key="welcome")
    notification = notification_send(
        client=client_tenant, template_id="welcome", variables={"name": "x"},
        recipients=[{"id": f"u{i}", "email": f"u{i}@example.com"} for i in range(30)],
    ).notification
    ids = [str(d.id) for d in notification.deliveries.all()]
    attempts = deliveries_claim(delivery_ids=ids)
    now = timezone.now()
    rows = [outcome_row(delivery_id=i, attempt=attempts[i], result=SendResult.sent("sendgrid", i),
                        now=now)[0] for i in ids]
    with CaptureQueriesContext(connection) as ctx:
        _write_many(rows, now)
    outbox_statements = [q for q in ctx.captured_queries if "webhooks_webhookmessage" in q["sql"]]
    assert len(outbox_statements) == 1
    assert WebhookMessage.objects.filter(event_type="delivery.sent").count() == 30
