"""Dispatch, the relay sweeper and the webhook outbox return what must be published; their
tasks publish it after commit (apps/core/tasks.py `publications_publish_on_commit`)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
import redis
from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.tasks import Publication, publications_publish
from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Delivery
from apps.notifications.relay import relay_sweep
from apps.notifications.services import notification_send
from apps.webhooks.outbound.services import webhook_endpoint_create

pytestmark = pytest.mark.django_db

DISPATCH = "notifications.deliveries_dispatch_task"
DELIVER = "webhooks.webhook_messages_deliver_task"


@pytest.fixture
def broker() -> redis.Redis:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()
    return client


def _tasks_in_broker(broker: redis.Redis) -> list[tuple[str, list[Any]]]:
    """(task name, args) of every message waiting in a queue, or in Redis's countdown set."""
    raw = [m for q in ("critical", "high", "normal", "low", "webhooks") for m in broker.lrange(q, 0, -1)]
    raw += [json.loads(v)[0] for v in broker.hvals("unacked")]
    out = []
    for message in raw:
        body = json.loads(message)
        args = json.loads(base64.b64decode(body["body"]))[0]
        out.append((body["headers"]["task"], args))
    return out


def _accept(client: Any, name: str) -> Delivery:
    return notification_send(
        client=client, template_id="welcome", variables={"name": "Ada"},
        recipients=[{"id": name, "email": f"{name}@example.com"}],
    ).notification.deliveries.get()


def test_dispatch_returns_its_retry_and_webhook_messages_and_publishes_nothing(
    client_tenant: Any, email_template: Any, clean_sandbox: Any, broker: redis.Redis,
) -> None:
    # Given a client subscribed to delivery events, and a provider answering 503 once
    webhook_endpoint_create(client=client_tenant, url="https://hooks.example.com/n", event_types=[])
    clean_sandbox.control(fail_next=1, fail_status=503)
    delivery = _accept(client_tenant, "ada")
    broker.flushdb()

    # When the dispatch service runs
    report = deliveries_dispatch(delivery_ids=[str(delivery.id)])

    # Then it returns the retry, on the delivery's queue with its backoff, and nothing is in
    # the broker until its caller publishes it
    [retry] = [p for p in report.publications if p.task == DISPATCH]
    assert retry.args == ([str(delivery.id)],)
    assert retry.queue == "normal" and retry.countdown is not None and retry.countdown > 0
    assert _tasks_in_broker(broker) == []
    assert publications_publish(report.publications) == len(report.publications)
    assert (DISPATCH, [[str(delivery.id)]]) in _tasks_in_broker(broker)


def test_the_dispatch_task_publishes_what_dispatch_returned(
    client_tenant: Any, email_template: Any, clean_sandbox: Any, broker: redis.Redis,
) -> None:
    # (a refused message: no provider receipt comes to publish webhooks of its own)
    webhook_endpoint_create(client=client_tenant, url="https://hooks.example.com/n", event_types=[])
    clean_sandbox.control(fail_next=1, fail_status=400)
    delivery = _accept(client_tenant, "ada")
    broker.flushdb()

    with transaction.atomic():  # a task run inside a transaction publishes at its commit
        current_app.tasks[DISPATCH](delivery_ids=[str(delivery.id)])
        assert _tasks_in_broker(broker) == []

    # The delivery failed, and the deliver tasks of its delivery.failed and
    # notification.completed webhooks are in the broker
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert [name for name, _ in _tasks_in_broker(broker)] == [DELIVER, DELIVER]


def test_the_sweep_returns_its_republications_and_its_task_publishes_them(
    client_tenant: Any, email_template: Any, broker: redis.Redis,
    django_capture_on_commit_callbacks: Any,
) -> None:
    delivery = _accept(client_tenant, "ada")
    relay_sweep()  # puts the broker marker in place
    broker.delete("critical", "high", "normal", "low")
    Delivery.objects.filter(id=delivery.id).update(
        status="pending", lease_until=timezone.now() - timedelta(seconds=1))

    report = relay_sweep()
    assert [(p.task, p.args) for p in report.publications] == [(DISPATCH, ([str(delivery.id)],))]
    assert _tasks_in_broker(broker) == []

    Delivery.objects.filter(id=delivery.id).update(lease_until=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        current_app.tasks["notifications.relay_sweep_task"]()
    assert _tasks_in_broker(broker) == [(DISPATCH, [[str(delivery.id)]])]
    delivery.refresh_from_db()
    assert delivery.status == "queued"  # published: the sweeper's lease starts again


def test_a_publication_the_broker_refuses_runs_its_on_failed_and_is_not_raised(
    client_tenant: Any, email_template: Any,
) -> None:
    from celery_app import app

    failed: list[str] = []
    previous = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:9/15"
    app._after_fork()
    try:
        published = publications_publish([Publication(DISPATCH, args=(["x"],), queue="normal",
                                                      on_failed=lambda: failed.append("x"))])
    finally:
        app.conf.broker_url = previous
        app._after_fork()
    assert (published, failed) == (0, ["x"])
