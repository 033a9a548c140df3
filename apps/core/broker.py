"""Celery's Redis broker transport (kombu's), with one Redis client object per channel.

kombu's Redis channel builds a new `redis.Redis` object for every message it publishes (and
every queue-length or purge call), on the same connection pool each time; building one
registers its ~170 response callbacks, about a quarter of the CPU of a web process's
`apply_async`. A `redis.Redis` object on a pool is thread-safe, so the channel keeps one (a
new one after kombu replaces the pool). Connections, their pool and every message are
unchanged; the consuming side (BRPOP through the asynchronous client) is kombu's own.

Settings: CELERY_BROKER_TRANSPORT = "apps.core.broker:Transport" for redis:// and rediss://
broker URLs (notifyhub/settings/base.py)."""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        pool = self.pool
        client = self._sync_client
        if client is None or client.connection_pool is not pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
