"""What a dead endpoint costs the workers (issue 9): 10,000 queued messages for an endpoint that
refuses connections, a real `webhooks` + `maintenance` worker with beat (the relay sweeper every
WEBHOOKS_SWEEP_INTERVAL_SECONDS), and the CPU its whole process group uses over one minute
once the queue is parked. Must be under 1 CPU-second a minute (before the endpoint backoff, each
message was retried on its own: about one core busy).

Run: bash scripts/test.sh tests/webhooks/outbound/test_dead_endpoint_cost.py -m slow -s
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from apps.webhooks.models import WebhookAttempt, WebhookMessage
from apps.webhooks.outbound.publish import webhook_messages_enqueue
from tests.factories import ClientFactory
from tests.support.processes import wait_for

from .support import make_endpoint

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

QUEUED = 10_000
WINDOW_SECONDS = 60.0
TICKS = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in this process group (the worker, its pool
    children and embedded beat), from /proc."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state(0) ppid(1) pgrp(2) … utime(11) stime(12).
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


@pytest.mark.timeout(600)
def test_10000_messages_for_a_dead_endpoint_cost_under_a_cpu_second_a_minute(
    start_worker: Any,
) -> None:
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    endpoint = make_endpoint(ClientFactory(), "http://127.0.0.1:9/nothing-listens")
    now = timezone.now()
    messages = WebhookMessage.objects.bulk_create(
        [WebhookMessage(endpoint=endpoint, event_type="delivery.sent",
                        payload={"type": "delivery.sent", "timestamp": now.isoformat(),
                                 "data": {"seq": i}},
                        next_attempt_at=now, lease_until=now + timedelta(minutes=5))
         for i in range(QUEUED)],
        batch_size=2000,
    )
    # As the outbox publishes them: one task per WEBHOOKS_CHUNK_SIZE messages.
    published = webhook_messages_enqueue(items=[(str(m.id), str(endpoint.id)) for m in messages])
    assert published == QUEUED

    worker = start_worker(queues="webhooks,maintenance", beat=True, concurrency=2,
                          name="dead-endpoint", loglevel="WARNING")
    assert worker.proc is not None
    pgid = worker.proc.pid
    started = time.monotonic()
    parked = WebhookMessage.objects.filter(status="pending", lease_until__isnull=True)
    wait_for(lambda: parked.count() >= QUEUED, timeout=240, interval=1.0,
             message="every queued message parked behind the endpoint")
    # The broker's backlog of task messages is worked off too (each one parks its chunk).
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    wait_for(lambda: client.llen("webhooks") == 0, timeout=240, interval=1.0,
             message="the webhooks queue is empty")
    time.sleep(2)
    parking = time.monotonic() - started
    parking_cpu = group_cpu_seconds(pgid)

    attempts_before = WebhookAttempt.objects.count()
    cpu_before = group_cpu_seconds(pgid)
    time.sleep(WINDOW_SECONDS)
    cpu = group_cpu_seconds(pgid) - cpu_before
    attempts = WebhookAttempt.objects.count() - attempts_before

    endpoint.refresh_from_db()
    print(f"\n[dead endpoint] {QUEUED} queued; parking the {published} published messages took "
          f"{parking:.1f} s wall, {parking_cpu:.2f} CPU-s (worker start-up included); then "
          f"{cpu:.3f} CPU-s in {WINDOW_SECONDS:.0f} s with {attempts} HTTP attempt(s); "
          f"probe_failures={endpoint.probe_failures}, next_probe_at={endpoint.next_probe_at}")
    assert cpu < 1.0
    assert attempts <= 2  # the 5 s step's probe at most; the next step is 5 min away
    assert WebhookAttempt.objects.count() <= 3
    assert WebhookMessage.objects.filter(status="pending").count() == QUEUED
