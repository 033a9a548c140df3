"""Provider receipts: constant cost per batch, a send recorded from its receipt, and no
deadlock (or 500) against the workers' outcome writes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.notifications.dispatch import _write_many, deliveries_claim, outcome_row
from apps.notifications.models import Delivery, DeliveryEvent, DeliveryStatus
from apps.notifications.providers.base import SendResult
from apps.notifications.receipts import ProviderEvent, delivery_receipts_apply
from apps.notifications.services import notification_send


def _send(client: Any, count: int, prefix: str = "r") -> list[Delivery]:
    notification = notification_send(
        client=client, template_id="welcome", variables={"name": "Ada"},
        recipients=[{"id": f"{prefix}{i}", "email": f"{prefix}{i}@example.com"} for i in range(count)],
    ).notification
    return list(notification.deliveries.order_by("id"))


def _claim(deliveries: list[Delivery]) -> dict[str, int]:
    return deliveries_claim(delivery_ids=[str(d.id) for d in deliveries])


def _sent(deliveries: list[Delivery]) -> None:
    attempts = _claim(deliveries)
    now = timezone.now()
    _write_many([outcome_row(delivery_id=str(d.id), attempt=attempts[str(d.id)], now=now,
                             result=SendResult.sent("sendgrid", f"MSG-{d.id}"))[0]
                 for d in deliveries], now)


def _delivered(deliveries: list[Delivery], tag: str) -> list[ProviderEvent]:
    return [ProviderEvent(provider="sendgrid", event="delivered", status=DeliveryStatus.DELIVERED,
                          occurred_at=timezone.now(), delivery_id=str(d.id),
                          provider_message_id=f"MSG-{d.id}", provider_event_id=f"{tag}-{d.id}")
            for d in deliveries]


@pytest.mark.django_db
def test_a_batch_costs_the_same_queries_whatever_its_size_erased_recipients_included(
    client_tenant: Any, email_template: Any
) -> None:
    small, large = _send(client_tenant, 2, "s"), _send(client_tenant, 12, "l")
    _sent(small + large)
    # Erased recipients: their deliveries keep no address (privacy/services.py).
    Delivery.objects.filter(id__in=[small[0].id, *[d.id for d in large[::2]]]).update(address="")

    with CaptureQueriesContext(connection) as few:
        assert delivery_receipts_apply(events=_delivered(small, "a")).applied == 2
    with CaptureQueriesContext(connection) as many:
        assert delivery_receipts_apply(events=_delivered(large, "a")).applied == 12

    assert len(many) == len(few)
    # No address is read (only compared with ""), so none is decrypted.
    selected = [q["sql"].split(" FROM ")[0].replace('"address" = \'\'', "")
                for q in many.captured_queries if q["sql"].startswith("SELECT")]
    assert not any('"address"' in columns for columns in selected)
    erased = Delivery.objects.get(id=large[0].id)
    assert (erased.status, erased.address) == ("delivered", "")


@pytest.mark.django_db
def test_a_receipt_for_a_delivery_whose_sent_was_never_recorded_records_the_send(
    client_tenant: Any, email_template: Any
) -> None:
    delivery = _send(client_tenant, 1)[0]
    _claim([delivery])  # the worker called the provider, then its write was lost

    report = delivery_receipts_apply(events=[ProviderEvent(
        provider="sendgrid", event="delivered", status=DeliveryStatus.DELIVERED,
        occurred_at=timezone.now(), delivery_id=str(delivery.id), provider_message_id="SG-1",
        provider_event_id="ev-1")])

    assert report.applied == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.provider, delivery.provider_message_id) == (
        "delivered", "sendgrid", "SG-1")
    assert delivery.sent_at is not None and delivery.lease_until is None
    events = list(delivery.events.values_list("event", "status", "provider"))
    assert events[-2:] == [("sent", "sent", "sendgrid"), ("delivered", "delivered", "sendgrid")]
    # The worker's outcome, arriving late, neither moves the row nor records a second `sent`.
    now = timezone.now()
    _write_many([outcome_row(delivery_id=str(delivery.id), attempt=1, now=now,
                             result=SendResult.sent("sendgrid", "SG-1"))[0]], now)
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    assert delivery.events.filter(event="sent").count() == 1
    # Nothing claims it again (the sweeper's requeue goes through the same claim).
    assert _claim([delivery]) == {}


def test_a_late_worker_outcome_still_records_that_the_send_failed_over(
    client_tenant: Any, email_template: Any
) -> None:
    """The receipt recorded the send first; the worker's own `sent`, arriving after it, is
    written anyway when it failed over, so the timeline says which provider was skipped."""
    delivery = _send(client_tenant, 1)[0]
    _claim([delivery])
    delivery_receipts_apply(events=[ProviderEvent(
        provider="smtp", event="delivered", status=DeliveryStatus.DELIVERED,
        occurred_at=timezone.now(), delivery_id=str(delivery.id), provider_message_id="M-1",
        provider_event_id="ev-2")])

    now = timezone.now()
    _write_many([outcome_row(delivery_id=str(delivery.id), attempt=1, now=now,
                             result=SendResult.sent("smtp", "M-1"),
                             detail={"failed_over_from": ["sendgrid"]})[0]], now)

    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    assert [e.detail.get("failed_over_from") for e in delivery.events.filter(event="sent")
            if e.detail and "failed_over_from" in e.detail] == [["sendgrid"]]


# --- lock order -----------------------------------------------------------------------------

def _in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = target()
        except Exception as exc:
            out["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _wait_for_lock_waiters(count: int) -> None:
    """Until `count` other backends of this database wait for a row lock."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                           " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
            if cursor.fetchone()[0] >= count:
                return
        time.sleep(0.02)
    raise AssertionError("nobody waits for a lock")


def _lock(ids: list[str]) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM notifications_delivery WHERE id = ANY(%s::uuid[]) "
                       "ORDER BY id FOR NO KEY UPDATE", [ids])


@pytest.mark.django_db(transaction=True)
def test_the_workers_outcome_write_locks_in_id_order_so_a_receipt_never_deadlocks_with_it(
    client_tenant: Any, email_template: Any
) -> None:
    low, high = _send(client_tenant, 2)
    attempts = _claim([low, high])
    # `high` first in the batch and on disk: an unordered UPDATE would lock it first.
    Delivery.objects.filter(id=low.id).update(updated_at=timezone.now())
    now = timezone.now()
    rows = [outcome_row(delivery_id=str(d.id), attempt=attempts[str(d.id)], now=now,
                        result=SendResult.sent("sendgrid", f"MSG-{d.id}"))[0] for d in (high, low)]
    locked_low, go_on = threading.Event(), threading.Event()

    def receipt_side() -> None:  # what a receipt batch does: lock in id order
        with transaction.atomic():
            _lock([str(low.id)])
            locked_low.set()
            go_on.wait(10)
            _lock([str(high.id)])

    receipt, receipt_out = _in_thread(receipt_side)
    assert locked_low.wait(10)
    worker, worker_out = _in_thread(lambda: _write_many(rows, now))
    _wait_for_lock_waiters(1)  # the worker waits for `low` …
    go_on.set()  # … and the receipt side now takes `high`: a deadlock if the worker held it
    receipt.join(15)
    worker.join(15)

    assert "error" not in receipt_out and "error" not in worker_out, (receipt_out, worker_out)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}


@pytest.mark.django_db(transaction=True)
def test_a_receipt_batch_that_loses_a_deadlock_is_retried_and_the_provider_gets_200(
    client_tenant: Any, email_template: Any
) -> None:
    low, high = _send(client_tenant, 2)
    _sent([low, high])
    holds_high, go_on = threading.Event(), threading.Event()

    def other_side() -> None:  # locks in the opposite order (as an unordered writer would)
        with transaction.atomic():
            # The receipts' transaction must be the one PostgreSQL aborts: this side looks for
            # a deadlock only long after the receipts' (default 1 s) check has run.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL deadlock_timeout = '20s'")
            _lock([str(high.id)])
            holds_high.set()
            go_on.wait(10)
            _lock([str(low.id)])

    other, other_out = _in_thread(other_side)
    assert holds_high.wait(10)
    receipts, receipts_out = _in_thread(
        lambda: delivery_receipts_apply(events=_delivered([low, high], "d")))
    _wait_for_lock_waiters(1)  # the receipts hold `low` and wait for `high` …
    go_on.set()  # … while the other side asks for `low`: PostgreSQL aborts the receipts
    other.join(15)
    receipts.join(15)

    assert "error" not in other_out and "error" not in receipts_out, (other_out, receipts_out)
    assert receipts_out["result"].applied == 2
    assert set(Delivery.objects.values_list("status", flat=True)) == {"delivered"}
    assert DeliveryEvent.objects.filter(event="delivered").count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_claim_never_waits_in_a_lock_cycle_and_still_takes_rows_held_for_a_moment(
    client_tenant: Any, email_template: Any
) -> None:
    """The accept's pending → queued update may hold some of a chunk's rows while a worker
    claims it: the claim skips them, asks again once they are free, and deadlocks with nobody."""
    low, high = _send(client_tenant, 2)
    holds_high, release = threading.Event(), threading.Event()

    def accept_side() -> None:
        with transaction.atomic():
            Delivery.objects.filter(id=high.id).update(status="queued")
            holds_high.set()
            release.wait(10)
            _lock([str(low.id)])  # would close a cycle with a claim waiting for `high`

    other, other_out = _in_thread(accept_side)
    assert holds_high.wait(10)
    claim, claim_out = _in_thread(lambda: _claim([low, high]))
    time.sleep(0.1)
    release.set()
    other.join(15)
    claim.join(15)

    assert "error" not in other_out and "error" not in claim_out, (other_out, claim_out)
    assert claim_out["result"] == {str(low.id): 1, str(high.id): 1}


@pytest.mark.django_db
def test_a_receipt_with_nul_characters_is_stored_without_them(
    client_tenant: Any, email_template: Any
) -> None:
    delivery = _send(client_tenant, 1)[0]
    _sent([delivery])
    report = delivery_receipts_apply(events=[ProviderEvent(
        provider="sendgrid", event="bounced", status=DeliveryStatus.BOUNCED,
        occurred_at=timezone.now(), delivery_id=str(delivery.id), provider_event_id="ev\x00-1",
        error_code="5.1.1\x00", error_message="550 no\x00 such user",
        detail={"type": "bounce\x00", "nested": ["a\x00"]})])

    assert report.applied == 1
    event = DeliveryEvent.objects.get(delivery=delivery, event="bounced")
    assert (event.provider_event_id, event.error_code, event.error_message) == (
        "ev-1", "5.1.1", "550 no such user")
    assert event.detail == {"type": "bounce", "nested": ["a"]}


@pytest.mark.django_db
@pytest.mark.parametrize(("provider", "late_status"), [("twilio", "sent"), ("vonage", "submitted")])
def test_a_late_intermediate_receipt_never_moves_a_delivered_delivery_back(
    client_tenant: Any, email_template: Any, provider: str, late_status: str,
) -> None:
    from apps.notifications.providers.twilio.receipts import STATUS_MAP as TWILIO
    from apps.notifications.providers.vonage.receipts import STATUS_MAP as VONAGE

    # Given a delivered message, whose provider's intermediate status callback arrives last
    # (callbacks overtake each other), stamped later than the delivery
    status_map = {"twilio": TWILIO, "vonage": VONAGE}[provider]
    [delivery] = _send(client_tenant, 1)
    _sent([delivery])
    Delivery.objects.filter(id=delivery.id).update(provider=provider)
    now = timezone.now()

    def receipt(status: str, seconds: float) -> ProviderEvent:
        name, implied = status_map[status]
        return ProviderEvent(provider=provider, event=name, status=implied,
                             occurred_at=now + timedelta(seconds=seconds),
                             provider_message_id=f"MSG-{delivery.id}",
                             provider_event_id=f"{delivery.id}:{status}")

    delivery_receipts_apply(events=[receipt("delivered", 1)])
    report = delivery_receipts_apply(events=[receipt(late_status, 2)])

    # Then it changes nothing, and the timeline keeps it with the delivered status, marked late
    assert report.applied == 0
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    last = DeliveryEvent.objects.filter(delivery=delivery).order_by("id").last()
    assert last is not None and last.event == status_map[late_status][0]
    assert last.status == "delivered"
    assert last.detail["late"] is True and last.detail["reported_status"] == "sent"
    statuses = list(DeliveryEvent.objects.filter(delivery=delivery).order_by("id")
                    .values_list("status", flat=True))
    assert statuses[statuses.index("delivered"):] == ["delivered", "delivered"]
