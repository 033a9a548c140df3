"""Per-client request throttle for the API, shared by every web process through Redis.

One Lua script per request implements GCRA (the "generic cell rate algorithm", a token bucket
kept as one timestamp): a client may burst its whole per-period allowance, then gets one request
per `period / limit`. Redis runs the script atomically on its own clock, so concurrent requests
on any number of hosts can never overshoot. A refused request is 429 `throttled` with
`Retry-After` (whole seconds until the next request would be allowed).

The rate is REST_FRAMEWORK's DEFAULT_THROTTLE_RATES["client"] (default 1000/min), or the
client's entry in API_THROTTLE_RATES_BY_CLIENT (by slug). Requests without an API key (health,
provider callbacks) are not throttled here. If Redis cannot be reached the throttle fails open.

This module is imported while DRF builds APIView: it must not import rest_framework.views or
models at import time.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

import redis
from django.conf import settings
from prometheus_client import Counter
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from apps.core.redis_clients import shared_redis

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}

# KEYS[1]: the client's key. ARGV: emission interval (µs), burst window (µs).
# Returns {allowed (0/1), wait µs}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if allow_at > now then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX',
           math.floor((new_tat - now) / 1000) + 1000)
return {1, 0}
"""

LIMIT_REJECTIONS = Counter(
    "notifyhub_api_limit_rejections", "API requests refused by a limit (throttled, quota_exceeded).",
    ["reason"],
)

_lock = threading.Lock()
_last_warning = 0.0


def limits_redis() -> redis.Redis:
    """A client with short timeouts for throttle and quota counters."""
    return shared_redis(settings.API_LIMITS_REDIS_URL, connect_timeout=0.25, timeout=0.5,
                        health_check_interval=30)


_scripts: dict[tuple[str, str], Any] = {}


def script(source: str) -> Any:
    """A registered Lua script on the limits client (EVALSHA, loaded on first use)."""
    client = limits_redis()
    cache_key = (settings.API_LIMITS_REDIS_URL, source)
    with _lock:
        registered = _scripts.get(cache_key)
        if registered is None:
            registered = _scripts[cache_key] = client.register_script(source)
    return registered


def warn_failing_open(what: str, exc: BaseException) -> None:
    """Logs a Redis outage at most once a minute per process."""
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= 60:
        _last_warning = now
        logger.warning("%s: Redis unavailable, failing open (%s)", what, exc)


def parse_rate(rate: str) -> tuple[int, int]:
    """'1000/min' → (1000, 60). Units: s, sec, second, m, min, minute, h, hour, d, day."""
    count, _, unit = rate.partition("/")
    unit = unit.strip().lower()
    if not unit or unit[0] not in _PERIODS:
        raise ValueError(f"Unknown throttle rate unit in {rate!r}.")
    return int(count), _PERIODS[unit[0]]


def client_rate(client: Any) -> str | None:
    override = settings.API_THROTTLE_RATES_BY_CLIENT.get(getattr(client, "slug", ""))
    rate = override or api_settings.DEFAULT_THROTTLE_RATES.get(ClientRateThrottle.scope)
    return str(rate) if rate else None


def throttle_hit(*, key: str, limit: int, period_seconds: int) -> float:
    """Counts one request against `key`; returns 0 if allowed, else seconds to wait."""
    period_us = period_seconds * 1_000_000
    interval_us = max(period_us // max(limit, 1), 1)
    allowed, wait_us = script(_GCRA)(keys=[key], args=[interval_us, period_us])
    return 0.0 if int(allowed) else int(wait_us) / 1_000_000


class WindowThrottle(BaseThrottle):
    """A DRF throttle over `throttle_hit`: `counted(request)` says which rate and key a request
    counts against (None: not throttled here). Fails open, logged, if Redis is down."""

    what = "API throttle"  # in the fail-open warning

    def __init__(self) -> None:
        self._wait: float | None = None

    def counted(self, request: Any) -> tuple[str, str] | None:
        """(rate such as '1000/min', key) or None."""
        raise NotImplementedError

    def allow_request(self, request: Any, view: Any) -> bool:
        counted = self.counted(request)
        if counted is None:
            return True
        rate, key = counted
        limit, period = parse_rate(rate)
        try:
            wait = throttle_hit(key=key, limit=limit, period_seconds=period)
        except redis.RedisError as exc:
            warn_failing_open(self.what, exc)
            return True
        if wait <= 0:
            return True
        LIMIT_REJECTIONS.labels("throttled").inc()
        self._wait = wait
        return False

    def wait(self) -> float | None:
        # DRF writes Retry-After with "%d": round up so it is never 0.
        return float(max(math.ceil(self._wait), 1)) if self._wait is not None else None


class ClientRateThrottle(WindowThrottle):
    """DRF throttle: N requests per period per client (the API key's tenant)."""

    scope = "client"

    def counted(self, request: Any) -> tuple[str, str] | None:
        from .models import Client

        client = request.user
        if not isinstance(client, Client):
            return None
        rate = client_rate(client)
        return (rate, f"notifyhub:throttle:{client.pk}") if rate else None
