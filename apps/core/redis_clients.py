"""One Redis client per process for each URL and timeout profile.

A client owns a connection pool, so a client made per call opens a connection per call; the
throttle, the resilience primitives, the relay's broker check and the inbox's publisher each
keep theirs here. `fail_fast`: no retries, so a Redis outage costs one short timeout and the
caller degrades (fails open, or logs) at once."""

from __future__ import annotations

import threading

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

_clients: dict[tuple[str, float, float, bool, int], redis.Redis] = {}
_lock = threading.Lock()


def shared_redis(url: str, *, connect_timeout: float, timeout: float, fail_fast: bool = False,
                 health_check_interval: int = 0) -> redis.Redis:
    """The process's client for `url` with these socket timeouts (seconds)."""
    key = (url, connect_timeout, timeout, fail_fast, health_check_interval)
    with _lock:
        client = _clients.get(key)
        if client is None:
            options: dict[str, object] = {}
            if fail_fast:
                options["retry"] = Retry(NoBackoff(), 0)
            client = _clients[key] = redis.Redis.from_url(
                url, socket_connect_timeout=connect_timeout, socket_timeout=timeout,
                health_check_interval=health_check_interval, **options)  # type: ignore[arg-type]
    return client
