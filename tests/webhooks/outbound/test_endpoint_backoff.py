"""Endpoint backoff (as Svix does): an endpoint that cannot be reached or answers 5xx is
backed off as a whole. Its queued messages wait, parked; one probe request is made per
backoff step; a probe that succeeds drains the queue, oldest first, in batches; a healthy
endpoint next to a dead one is not delayed. Tasks are run here by hand, as a worker would
(the `published` fixture records what would have gone to the broker)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from celery import current_app
from django.utils import timezone

from apps.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from apps.webhooks.outbound.delivery import (
    endpoint_backoff_delays,
    webhook_endpoint_drain,
    webhook_endpoint_probe,
    webhook_messages_deliver,
)
from apps.webhooks.outbound.relay import webhook_messages_relay
from tests.sandbox.receiver import HttpReceiver

from .support import Published, make_endpoint

pytestmark = pytest.mark.django_db

DEAD_URL = "http://127.0.0.1:9/nothing-listens"  # connection refused


def queue(endpoint: WebhookEndpoint, n: int) -> list[str]:
    """n pending messages for the endpoint, created one millisecond apart (oldest first), as
    the outbox writes them."""
    now = timezone.now()
    messages = WebhookMessage.objects.bulk_create([
        WebhookMessage(endpoint=endpoint, event_type="delivery.sent",
                       payload={"type": "delivery.sent", "timestamp": now.isoformat(),
                                "data": {"seq": i}},
                       next_attempt_at=now, lease_until=now + timedelta(minutes=5))
        for i in range(n)
    ])
    for i, message in enumerate(messages):
        WebhookMessage.objects.filter(id=message.id).update(
            created_at=now - timedelta(seconds=60) + timedelta(milliseconds=i))
    return [str(m.id) for m in messages]


def deliver_as_tasks(ids: list[str], chunk: int = 10) -> None:
    """What the `webhooks` workers do with the outbox's publishes: one task per chunk."""
    for start in range(0, len(ids), chunk):
        webhook_messages_deliver(message_ids=ids[start:start + chunk])


def probe_time(endpoint: WebhookEndpoint) -> datetime:
    """Just after the endpoint's next probe is due."""
    endpoint.refresh_from_db()
    assert endpoint.next_probe_at is not None
    return endpoint.next_probe_at + timedelta(milliseconds=1)


def run_drains(published: Published) -> int:
    runs = 0
    while published.drains:
        webhook_endpoint_drain(endpoint_id=published.drains.pop(0))
        runs += 1
        assert runs < 100
    return runs


def test_200_messages_for_a_dead_endpoint_cost_one_request_per_backoff_step(
    client_tenant: Any, published: Published,
) -> None:
    endpoint = make_endpoint(client_tenant, DEAD_URL)
    ids = queue(endpoint, 200)

    deliver_as_tasks(ids)

    assert WebhookAttempt.objects.count() == 1
    endpoint.refresh_from_db()
    assert endpoint.failing_since is not None and endpoint.probe_failures == 1
    step = probe_time(endpoint) - timedelta(milliseconds=1) - endpoint.failing_since
    assert timedelta(seconds=4) < step <= timedelta(seconds=5)
    # Everything else waits, parked: no lease, so the sweeper does not publish it.
    assert WebhookMessage.objects.filter(status="pending", lease_until__isnull=True).count() == 200
    assert len(published.probes) == 1 and published == []
    report = webhook_messages_relay()
    assert (report.published, report.probes) == (0, 0)  # the probe is not due yet

    # Step after step, one request each; a probe that is not due sends nothing.
    now = timezone.now()
    delays = endpoint_backoff_delays()
    for step_number in range(1, 8):
        assert not webhook_endpoint_probe(endpoint_id=str(endpoint.id), now=now).probed
        now = probe_time(endpoint)
        probe = webhook_endpoint_probe(endpoint_id=str(endpoint.id), now=now)
        assert probe.probed and not probe.succeeded
        assert WebhookAttempt.objects.count() == step_number + 1
        endpoint.refresh_from_db()
        assert endpoint.probe_failures == step_number + 1
        wait = delays[min(step_number, len(delays) - 1)]
        assert endpoint.next_probe_at == now + timedelta(seconds=wait)
    assert published == []  # never a task per message
    # The probe was the oldest message, whose 8 attempts are now used up: it failed; the
    # others never spent one.
    oldest = WebhookMessage.objects.get(id=ids[0])
    assert (oldest.status, oldest.attempts) == ("failed", 8)
    assert WebhookMessage.objects.filter(status="pending", attempts=0).count() == 199


def test_the_sweeper_publishes_a_long_step_probe_once_it_is_due(
    client_tenant: Any, published: Published, django_capture_on_commit_callbacks: Any,
) -> None:
    endpoint = make_endpoint(client_tenant, DEAD_URL)
    deliver_as_tasks(queue(endpoint, 30))
    WebhookEndpoint.objects.filter(id=endpoint.id).update(
        next_probe_at=timezone.now() - timedelta(seconds=1))
    published.probes.clear()

    with django_capture_on_commit_callbacks(execute=True):  # the task publishes after commit
        report = current_app.tasks["webhooks.webhook_messages_relay_task"]()

    assert (report["published"], report["probes"]) == (0, 1)
    assert published.probes == [(str(endpoint.id), None)]


def test_recovery_drains_every_queued_message_in_order_in_batches(
    client_tenant: Any, receiver: HttpReceiver, published: Published, settings: Any,
) -> None:
    settings.WEBHOOKS_DRAIN_BATCH = 50
    up = {"value": False}
    receiver.responder = lambda request: (200, "text/plain", b"ok") if up["value"] else (
        503, "text/plain", b"down")
    endpoint = make_endpoint(client_tenant, receiver.url("/hooks"))
    ids = queue(endpoint, 200)

    deliver_as_tasks(ids)
    assert len(receiver.wait_for(1)) == 1
    endpoint.refresh_from_db()
    assert endpoint.next_probe_at is not None

    up["value"] = True
    probe = webhook_endpoint_probe(endpoint_id=str(endpoint.id), now=probe_time(endpoint))
    assert probe.probed and probe.succeeded
    endpoint.refresh_from_db()
    assert (endpoint.failing_since, endpoint.next_probe_at, endpoint.probe_failures) == (None, None, 0)

    drains = run_drains(published)

    assert drains == 4  # 199 left after the probe: 50, 50, 50, 49
    assert set(WebhookMessage.objects.values_list("status", flat=True)) == {"succeeded"}
    requests = receiver.wait_for(201)
    sent_ids = [r.headers["webhook-id"] for r in requests[1:]]
    assert sent_ids == ids  # the probe (the oldest) first, then the rest oldest first
    assert published == []  # no task per message


def test_a_healthy_endpoint_next_to_a_dead_one_is_not_delayed(
    client_tenant: Any, receiver: HttpReceiver, published: Published,
) -> None:
    dead = make_endpoint(client_tenant, DEAD_URL)
    healthy = make_endpoint(client_tenant, receiver.url("/hooks"))
    dead_ids, healthy_ids = queue(dead, 100), queue(healthy, 100)
    mixed = [i for pair in zip(dead_ids, healthy_ids, strict=True) for i in pair]

    webhook_messages_deliver(message_ids=mixed)  # one task with both endpoints' messages

    assert len(receiver.wait_for(100)) == 100
    assert WebhookMessage.objects.filter(endpoint=healthy, status="succeeded").count() == 100
    assert WebhookAttempt.objects.filter(endpoint=dead).count() == 1
    healthy.refresh_from_db()
    assert (healthy.failing_since, healthy.next_probe_at) == (None, None)


def test_a_message_for_a_backed_off_endpoint_is_parked_not_sent(
    client_tenant: Any, published: Published,
) -> None:
    endpoint = make_endpoint(client_tenant, DEAD_URL)
    deliver_as_tasks(queue(endpoint, 1))
    [late] = queue(endpoint, 1)  # written after the endpoint started failing

    report = webhook_messages_deliver(message_ids=[late])

    assert (report.claimed, report.parked) == (0, 1)
    assert WebhookAttempt.objects.count() == 1
    assert WebhookMessage.objects.get(id=late).lease_until is None


def test_a_4xx_on_the_probe_ends_the_backoff_the_endpoint_answers(
    client_tenant: Any, receiver: HttpReceiver, published: Published,
) -> None:
    answers = iter([503, 422])
    receiver.responder = lambda request: (next(answers, 200), "text/plain", b"")
    endpoint = make_endpoint(client_tenant, receiver.url("/hooks"))
    ids = queue(endpoint, 3)
    deliver_as_tasks(ids)

    probe = webhook_endpoint_probe(endpoint_id=str(endpoint.id), now=probe_time(endpoint))
    assert probe.probed and not probe.succeeded
    endpoint.refresh_from_db()
    assert endpoint.next_probe_at is None
    run_drains(published)
    statuses = {str(i): s for i, s in WebhookMessage.objects.values_list("id", "status")}
    # The oldest waits for its own next attempt (its schedule), the other two went out.
    assert [statuses[m] for m in ids] == ["pending", "succeeded", "succeeded"]


def test_a_disabled_endpoint_fails_its_parked_messages(
    client_tenant: Any, published: Published,
) -> None:
    from apps.webhooks.outbound.services import webhook_endpoint_disable

    endpoint = make_endpoint(client_tenant, DEAD_URL)
    deliver_as_tasks(queue(endpoint, 20))
    assert webhook_endpoint_disable(endpoint_id=endpoint.id, reason="test")
    assert set(WebhookMessage.objects.values_list("status", flat=True)) == {"failed"}
    assert not webhook_endpoint_probe(endpoint_id=str(endpoint.id),
                                      now=timezone.now() + timedelta(days=1)).probed


def test_the_api_shows_the_backoff(client_tenant: Any, api: Any, published: Published) -> None:
    endpoint = make_endpoint(client_tenant, DEAD_URL)
    deliver_as_tasks(queue(endpoint, 5))
    body = api.get(f"/api/v1/webhooks/{endpoint.id}").json()
    assert body["failing_since"] is not None and body["next_probe_at"] is not None
    assert body["enabled"] is True


def test_a_second_attempt_already_in_flight_does_not_take_another_step(
    client_tenant: Any, published: Published,
) -> None:
    """Two workers were each sending one message when the endpoint died: both fail, the
    endpoint takes one backoff step (5 s), not two (5 min)."""
    from apps.webhooks.outbound.delivery import webhook_attempt_record, webhook_message_claim
    from apps.webhooks.outbound.transport import HttpResult

    endpoint = make_endpoint(client_tenant, DEAD_URL)
    first, second = queue(endpoint, 2)
    refused = HttpResult(status_code=None, duration_ms=1, error_code="connection_error",
                         error="Could not connect.")
    claims = [webhook_message_claim(message_id=m) for m in (first, second)]
    assert claims == [1, 1]
    for message_id in (first, second):
        message = WebhookMessage.objects.get(id=message_id)
        webhook_attempt_record(message=message, endpoint=endpoint, attempt=1, result=refused)

    endpoint.refresh_from_db()
    assert endpoint.probe_failures == 1
    assert endpoint.next_probe_at is not None and endpoint.failing_since is not None
    assert endpoint.next_probe_at - endpoint.failing_since <= timedelta(seconds=5)
