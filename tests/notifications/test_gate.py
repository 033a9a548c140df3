"""Provider admission by priority (apps/notifications/gate.py): critical and high sends never
wait behind the tokens a normal/low backlog booked ahead, and the lanes together keep the
provider account's rate."""

from __future__ import annotations

from typing import Any

import pytest

from apps.notifications import gate
from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Delivery
from apps.notifications.services import notification_send

pytestmark = pytest.mark.django_db

ACCOUNTS = ("sendgrid:default", "sendgrid:test")


def _limits(settings: Any, *, rate: float, share: float) -> None:
    settings.PROVIDER_RATE_LIMITS = {"sendgrid": rate}
    settings.PROVIDER_URGENT_SHARE = share
    gate.reset_caches()


def _send(client: Any, email: str, priority: str) -> Delivery:
    notification = notification_send(
        client=client, recipients=[{"id": email.split("@")[0], "email": email}],
        template_id="welcome", variables={"name": "Ada"}, priority=priority).notification
    return notification.deliveries.get()


def _book_the_bulk_lane_ahead(seconds_of_tokens: int, rate: float) -> None:
    """What a backlog draining at the provider's limit does: its deferred chunks book the
    bucket minutes ahead (dispatch's `deferrals`)."""
    for name in ACCOUNTS:
        bucket = gate.bucket_for(name)
        bucket.acquire(bucket.burst)
        booking = bucket.reserve(int(seconds_of_tokens * rate), max_wait_seconds=600)
        assert booking.booked > 0


@pytest.mark.parametrize("priority", ["critical", "high"])
def test_an_urgent_send_goes_out_while_a_backlog_has_booked_the_provider_ahead(
    client_tenant: Any, email_template: Any, clean_sandbox: Any, settings: Any, priority: str
) -> None:
    _limits(settings, rate=20, share=0.1)
    _book_the_bulk_lane_ahead(60, rate=20)
    normal = _send(client_tenant, "bulk@example.com", "normal")
    urgent = _send(client_tenant, "urgent@example.com", priority)

    deliveries_dispatch(delivery_ids=[str(normal.id)])
    deliveries_dispatch(delivery_ids=[str(urgent.id)])

    normal.refresh_from_db()
    urgent.refresh_from_db()
    assert urgent.status == "sent"
    assert normal.status != "sent" and normal.due_at is not None  # waits for its booked token
    assert [m["to"] for m in clean_sandbox.messages()] == ["urgent@example.com"]


def test_without_an_urgent_share_a_critical_send_waits_behind_the_backlog(
    client_tenant: Any, email_template: Any, clean_sandbox: Any, settings: Any
) -> None:
    _limits(settings, rate=20, share=0)
    _book_the_bulk_lane_ahead(60, rate=20)
    critical = _send(client_tenant, "urgent@example.com", "critical")

    deliveries_dispatch(delivery_ids=[str(critical.id)])

    critical.refresh_from_db()
    assert critical.status != "sent" and critical.due_at is not None
    assert clean_sandbox.messages() == []


def test_the_lanes_share_the_account_rate_and_urgent_borrows_what_bulk_leaves(
    clean_sandbox: Any, settings: Any
) -> None:
    _limits(settings, rate=100, share=0.1)
    bulk = gate.bucket_for("sendgrid:default")
    urgent = gate.bucket_for("sendgrid:default", True)
    assert isinstance(urgent, gate.UrgentBucket)
    assert bulk.rate_per_second == pytest.approx(90) and urgent.own.rate_per_second == pytest.approx(10)
    assert urgent.rate_per_second == pytest.approx(100)
    # Bulk idle: urgent takes its own 10 and 30 of bulk's spare tokens now …
    assert urgent.acquire(40).granted == 40
    # … and bulk gets only what is left of its own burst, never urgent's.
    assert bulk.acquire(200).granted == bulk.burst - 30
    # Both empty now: an urgent ask is answered with its own lane's wait.
    grant = urgent.acquire(5)
    assert grant.granted < 5 and grant.wait_seconds > 0
