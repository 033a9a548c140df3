"""apps.core.broker: Celery's Redis transport keeps one Redis client per channel; messages
still reach their queue."""

from __future__ import annotations

import uuid

from kombu import Queue

from apps.core import broker
from celery_app import app


def test_publishing_reuses_one_client_and_reaches_the_queue() -> None:
    name = f"test-broker-{uuid.uuid4().hex[:8]}"
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        assert isinstance(channel, broker.Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        try:
            producer = conn.Producer(channel)
            for n in range(3):
                producer.publish({"n": n}, routing_key=name, declare=[Queue(name)])
            assert channel._size(name) == 3
            message = channel._get(name)
            assert message["body"] and channel._size(name) == 2
        finally:
            channel._purge(name)
            channel._delete(name, name, name, "")


def test_a_new_pool_gets_a_new_client() -> None:
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        with channel.conn_or_acquire() as before:
            pass
        channel._pool = None  # what kombu does when it drops its connections
        with channel.conn_or_acquire() as after:
            assert after is not before and after.connection_pool is channel.pool
