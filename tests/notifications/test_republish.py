"""Work whose task message never reached the broker, or that the broker lost, moves at the
next sweep: not after RELAY_REQUEUE_AFTER_SECONDS."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from apps.core.tasks import publications_publish
from apps.notifications.models import Delivery
from apps.notifications.relay import SweepReport, relay_sweep
from apps.notifications.services import notification_send

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker() -> redis.Redis:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()
    return client


def _sweep() -> SweepReport:
    """What the sweeper's task does: sweep, then publish what the sweep returned."""
    report = relay_sweep()
    publications_publish(report.publications)
    return report


def _accept(client: Any, name: str) -> Delivery:
    return notification_send(
        client=client, template_id="welcome", variables={"name": "Ada"},
        recipients=[{"id": name, "email": f"{name}@example.com"}],
    ).notification.deliveries.get()


def _queued_messages(broker: redis.Redis) -> int:
    return sum(int(broker.llen(q)) for q in ("critical", "high", "normal", "low"))


def test_work_whose_publish_failed_is_republished_by_the_next_sweep(
    client_tenant: Any, email_template: Any, broker: redis.Redis,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from celery_app import app

    # Given a send accepted while the broker is down (the 202 does not depend on it)
    previous = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:9/15"
    app._after_fork()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            delivery = _accept(client_tenant, "ada")
    finally:
        app.conf.broker_url = previous
        app._after_fork()
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert _queued_messages(broker) == 0

    # When the broker is back and the sweeper runs
    report = _sweep()

    # Then the delivery is published at once
    assert report.requeued == 1
    delivery.refresh_from_db()
    assert delivery.status == "queued"
    assert _queued_messages(broker) == 1


def test_a_sweep_after_the_broker_lost_its_data_republishes_every_waiting_delivery(
    client_tenant: Any, email_template: Any, broker: redis.Redis,
    django_capture_on_commit_callbacks: Any,
) -> None:
    _sweep()  # the sweeper has put its marker in the broker
    with django_capture_on_commit_callbacks(execute=True):
        waiting = _accept(client_tenant, "ada")
        retrying = _accept(client_tenant, "bob")
    retry_at = timezone.now() + timedelta(seconds=30)
    Delivery.objects.filter(id=retrying.id).update(
        status="retrying", due_at=retry_at, lease_until=retry_at + timedelta(seconds=120))

    broker.flushdb()  # Redis restarted with an empty dataset: the task message is gone
    report = _sweep()

    assert report.requeued == 1
    assert report.broker_data_lost == 2
    waiting.refresh_from_db()
    assert waiting.status == "queued"
    assert _queued_messages(broker) == 1
    # The retry is re-published when its countdown ends, not before (the claim would skip it).
    retrying.refresh_from_db()
    assert (retrying.status, retrying.lease_until) == ("retrying", retry_at)
    # The marker is back: the next sweep re-publishes nothing more.
    assert _sweep().broker_data_lost == 0


def test_a_broker_that_kept_its_data_republishes_nothing_early(
    client_tenant: Any, email_template: Any, broker: redis.Redis,
    django_capture_on_commit_callbacks: Any,
) -> None:
    _sweep()
    with django_capture_on_commit_callbacks(execute=True):
        _accept(client_tenant, "ada")
    report = _sweep()
    assert (report.broker_data_lost, report.requeued) == (0, 0)
