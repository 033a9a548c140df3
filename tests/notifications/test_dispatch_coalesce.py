"""A single-send task takes the single sends waiting behind it in the queue (issue 9, chaos
`redis`/`postgres` at full scale: a stream of single sends, one provider call per task, left
each send waiting its turn for up to two minutes after a store came back)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Delivery
from apps.notifications.services import notification_send

pytestmark = pytest.mark.django_db


def single_send(client: Any, address: str, priority: str = "normal") -> str:
    outcome = notification_send(client=client, recipients=[{"id": address.split("@")[0], "email": address}],
                                template_id="welcome", variables={"name": "Ada"}, priority=priority)
    return str(outcome.notification.deliveries.get().id)


def waited(ids: list[str], seconds: float) -> None:
    """As if their messages had been in the queue this long (behind others)."""
    Delivery.objects.filter(id__in=ids).update(updated_at=timezone.now() - timedelta(seconds=seconds))


def test_a_single_send_task_sends_the_single_sends_waiting_behind_it_once_each(
    client_tenant: Any, email_template: Any, clean_sandbox: Any
) -> None:
    ids = [single_send(client_tenant, f"user{i}@example.com") for i in range(6)]
    waited(ids, 30)

    report = deliveries_dispatch(delivery_ids=ids[:1])

    assert report.claimed == 6 and report.sent == 6
    assert set(Delivery.objects.filter(id__in=ids).values_list("status", flat=True)) == {"sent"}
    # Their own messages come later and find nothing: no second provider send.
    for delivery_id in ids[1:]:
        assert deliveries_dispatch(delivery_ids=[delivery_id]).claimed == 0
    for i in range(6):
        assert len(clean_sandbox.messages(to=f"user{i}@example.com")) == 1


def test_fresh_sends_other_priorities_and_critical_sends_wait_for_their_own_message(
    client_tenant: Any, email_template: Any, clean_sandbox: Any
) -> None:
    first = single_send(client_tenant, "first@example.com")
    fresh = single_send(client_tenant, "fresh@example.com")  # its message is on its way
    low = single_send(client_tenant, "low@example.com", priority="low")
    waited([first, low], 30)
    critical = [single_send(client_tenant, f"c{i}@example.com", priority="critical") for i in range(2)]
    waited(critical, 30)

    assert deliveries_dispatch(delivery_ids=[first]).claimed == 1
    assert deliveries_dispatch(delivery_ids=critical[:1]).claimed == 1

    statuses = dict(Delivery.objects.filter(id__in=[fresh, low, critical[1]])
                    .values_list("id", "status"))
    assert set(statuses.values()) == {"pending"}
    assert clean_sandbox.messages(to="fresh@example.com") == []


def test_a_deferred_send_comes_back_with_its_own_message_not_taken_along(
    client_tenant: Any, email_template: Any, clean_sandbox: Any
) -> None:
    """A rate-limited delivery deferred with a booking (due_at set) waits for its own message,
    which carries the booked tokens: taken along early it would ask the bucket again and be
    deferred again (failover churn)."""
    first = single_send(client_tenant, "first@example.com")
    deferred = single_send(client_tenant, "deferred@example.com")
    waited([first, deferred], 30)
    Delivery.objects.filter(id=deferred).update(status="queued",
                                                due_at=timezone.now() - timedelta(seconds=1))

    assert deliveries_dispatch(delivery_ids=[first]).claimed == 1
    assert Delivery.objects.get(id=deferred).status == "queued"
    assert deliveries_dispatch(delivery_ids=[deferred]).claimed == 1
