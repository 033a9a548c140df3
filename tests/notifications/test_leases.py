"""Leases: bounded by one provider call, renewed only for rows a worker still holds in the
same attempt, and never a second send for a row whose receipt already arrived."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.notifications.dispatch import LeaseKeeper, deliveries_claim, deliveries_dispatch
from apps.notifications.models import Delivery, DeliveryStatus
from apps.notifications.receipts import ProviderEvent, delivery_receipts_apply
from apps.notifications.relay import relay_sweep
from apps.notifications.services import notification_send

pytestmark = pytest.mark.django_db


def _accept(client: Any, name: str, priority: str = "normal") -> Delivery:
    return notification_send(
        client=client, template_id="welcome", variables={"name": "Ada"}, priority=priority,
        recipients=[{"id": name, "email": f"{name}@example.com"}],
    ).notification.deliveries.get()


def _lease_left(delivery: Delivery) -> float:
    delivery.refresh_from_db()
    assert delivery.lease_until is not None
    return (delivery.lease_until - timezone.now()).total_seconds()


def test_a_claim_holds_a_delivery_for_one_provider_call_and_a_margin(
    client_tenant: Any, email_template: Any
) -> None:
    normal, critical = _accept(client_tenant, "n"), _accept(client_tenant, "c", "critical")
    deliveries_claim(delivery_ids=[str(normal.id), str(critical.id)])
    assert 25 < _lease_left(normal) <= 30  # DELIVERY_LEASE_SECONDS
    assert 10 < _lease_left(critical) <= 15  # DELIVERY_LEASE_SECONDS_CRITICAL


def test_the_lease_follows_the_settings(client_tenant: Any, email_template: Any, settings: Any) -> None:
    settings.DELIVERY_LEASE_SECONDS = 50
    settings.DELIVERY_LEASE_SECONDS_CRITICAL = 20
    normal, critical = _accept(client_tenant, "n"), _accept(client_tenant, "c", "critical")
    deliveries_claim(delivery_ids=[str(normal.id), str(critical.id)])
    assert 45 < _lease_left(normal) <= 50
    assert 15 < _lease_left(critical) <= 20


def test_renewal_extends_only_rows_still_sending_in_the_workers_attempt(
    client_tenant: Any, email_template: Any, settings: Any
) -> None:
    settings.DELIVERY_LEASE_RENEW_SECONDS = 0  # renew at every call
    held, recorded, taken_over = (_accept(client_tenant, n) for n in ("held", "recorded", "over"))
    attempts = deliveries_claim(delivery_ids=[str(d.id) for d in (held, recorded, taken_over)])
    short = timezone.now() + timedelta(seconds=1)
    Delivery.objects.filter(id__in=[held.id, recorded.id, taken_over.id]).update(lease_until=short)
    # One row's outcome is recorded by a receipt; another was handed out again and claimed by
    # a second worker (attempt 2).
    Delivery.objects.filter(id=recorded.id).update(status=DeliveryStatus.SENT, lease_until=None)
    Delivery.objects.filter(id=taken_over.id).update(attempts=2)
    keeper = LeaseKeeper(attempts, ["normal"])
    keeper.last -= 1  # as if the renewal period had passed

    keeper.renew_if_due()

    assert _lease_left(held) > 25
    recorded.refresh_from_db()
    assert recorded.lease_until is None and recorded.status == "sent"
    taken_over.refresh_from_db()
    assert taken_over.lease_until == short


def test_a_sending_row_whose_receipt_arrived_is_not_sent_again_when_its_lease_ends(
    client_tenant: Any, email_template: Any, clean_sandbox: Any
) -> None:
    """The worker called the provider and died before recording it; the provider's receipt
    arrives while the row is still `sending`. When the lease ends, nothing hands it out again."""
    delivery = _accept(client_tenant, "ada")
    attempts = deliveries_claim(delivery_ids=[str(delivery.id)])
    delivery_receipts_apply(events=[ProviderEvent(
        provider="sendgrid", event="delivered", status=DeliveryStatus.DELIVERED,
        occurred_at=timezone.now(), delivery_id=str(delivery.id), provider_message_id="SG-1",
        provider_event_id="ev-lease-1")])
    keeper = LeaseKeeper(attempts, ["normal"])
    keeper.last -= 60
    keeper.renew_if_due()  # a renewal racing the receipt keeps nothing alive

    report = relay_sweep()
    deliveries_dispatch(delivery_ids=[str(delivery.id)])  # a duplicate task message

    assert report.requeued == 0 and report.gave_up == 0
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.lease_until) == ("delivered", 1, None)
    assert not delivery.events.filter(event__in=["requeued", "claimed"]).exclude(
        detail__attempt=1).exists()
    assert clean_sandbox.messages() == []
