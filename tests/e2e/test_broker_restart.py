"""Redis restarted with an empty dataset (as `make run`'s, which keeps nothing on disk): the
tasks it held are gone, and the sweeper re-publishes the waiting work at once, not after
RELAY_REQUEUE_AFTER_SECONDS (120 s)."""

from __future__ import annotations

import collections
from typing import Any

import pytest
import redis
from django.conf import settings

from apps.notifications.models import Delivery, DeliveryEvent
from apps.notifications.services import notification_send
from tests.factories import ClientFactory, TemplateFactory
from tests.support.processes import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_work_the_broker_lost_is_sent_within_a_few_sweeps_and_once(
    clean_sandbox: Any, start_worker: Any
) -> None:
    tenant = ClientFactory()
    TemplateFactory(client=tenant, key="welcome")
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    # The sweeper runs (beat + maintenance), no worker takes normal work yet.
    start_worker(queues="maintenance", beat=True, name="sweeper",
                 env={"RELAY_SWEEP_INTERVAL_SECONDS": "1"})
    wait_for(lambda: broker.exists("notifyhub:relay:broker-marker"), timeout=30,
             message="the first sweep")
    notification = notification_send(
        client=tenant, template_id="welcome", variables={"name": "x"},
        recipients=[{"id": f"u{i}", "email": f"u{i}@example.com"} for i in range(30)],
    ).notification
    assert broker.llen("normal") > 0  # published on commit

    broker.flushdb()  # Redis restarts empty
    start_worker(queues="normal", name="sender")

    wait_for(lambda: Delivery.objects.filter(notification=notification, sent_at__isnull=False)
             .count() == 30, timeout=45, message="all sent well before the 120 s requeue delay")
    per_delivery = collections.Counter(
        m["custom_args"]["notifyhub_delivery_id"] for m in clean_sandbox.messages())
    assert sorted(per_delivery.values()) == [1] * 30
    assert DeliveryEvent.objects.filter(delivery__notification=notification,
                                        event="claimed").count() == 30
