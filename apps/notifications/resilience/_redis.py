"""Shared plumbing for the Redis-backed resilience primitives: the fail-open guard (a
process-local "Redis is down" cool-down plus once-a-minute logging) and the settings-based
client factory.

Nothing here imports Django at module level; :func:`client_from_settings` reads settings
lazily so the primitives stay usable (and testable) with any ``redis.Redis`` client.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

import redis

from apps.core.redis_clients import shared_redis

#: After a connection/timeout error, calls through the same connection pool skip Redis (and
#: fail open immediately) for this many seconds, so a dead or black-holed Redis costs at most
#: one blocked call per pool per interval instead of one per send.
UNAVAILABLE_COOLDOWN_SECONDS = 2.0

#: Fail-open warnings are logged at most once per this many seconds per primitive name.
LOG_INTERVAL_SECONDS = 60.0

_lock = threading.Lock()
_down_until: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
_last_logged: dict[tuple[str, str], float] = {}


class RedisGuard:
    """Decides whether to try Redis at all and logs fail-open events, rate-limited.

    One guard per primitive instance; the cool-down state is shared by every guard whose
    client uses the same connection pool (e.g. all breakers built by ``from_settings()``).
    """

    def __init__(self, client: redis.Redis, kind: str, name: str, logger: logging.Logger) -> None:
        self._pool = client.connection_pool
        self._key = (kind, name)
        self._log = logger

    def available(self) -> bool:
        """False while the pool is in its post-failure cool-down (the caller fails open)."""
        with _lock:
            until = _down_until.get(self._pool)
        return until is None or time.monotonic() >= until

    def failed(self, exc: BaseException, what: str) -> None:
        """Record a Redis failure: start the cool-down for connection problems; log at most
        once per :data:`LOG_INTERVAL_SECONDS` per (kind, name)."""
        now = time.monotonic()
        with _lock:
            if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
                _down_until[self._pool] = now + UNAVAILABLE_COOLDOWN_SECONDS
            last = _last_logged.get(self._key)
            should_log = last is None or now - last >= LOG_INTERVAL_SECONDS
            if should_log:
                _last_logged[self._key] = now
        if should_log:
            self._log.warning(
                "%s %r: Redis unavailable, failing open (%s); further warnings for this %s are "
                "suppressed for %.0f s",
                self._key[0], self._key[1], what, self._key[0], LOG_INTERVAL_SECONDS,
                exc_info=exc,
            )

    def recovered(self) -> None:
        """Clear the cool-down after a successful call."""
        with _lock:
            _down_until.pop(self._pool, None)


def client_from_settings() -> redis.Redis:
    """A process-wide fail-fast client for the resilience primitives.

    URL: ``settings.RESILIENCE_REDIS_URL``, else ``settings.REDIS_URL``. The client never
    retries and has short socket timeouts (``RESILIENCE_REDIS_CONNECT_TIMEOUT`` /
    ``RESILIENCE_REDIS_TIMEOUT`` seconds, default 0.25 / 0.5) so a Redis outage degrades to
    fail-open quickly instead of stalling delivery.
    """
    from django.conf import settings  # lazy: keep the core classes framework-free

    url: str = getattr(settings, "RESILIENCE_REDIS_URL", None) or settings.REDIS_URL
    return shared_redis(
        url, connect_timeout=float(getattr(settings, "RESILIENCE_REDIS_CONNECT_TIMEOUT", 0.25)),
        timeout=float(getattr(settings, "RESILIENCE_REDIS_TIMEOUT", 0.5)), fail_fast=True,
        health_check_interval=30)
