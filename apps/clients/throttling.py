"""Per-client request throttle for the API, shared by every web process through Redis.

One Lua script per request implements GCRA (the "generic cell rate algorithm", a token bucket
kept as one timestamp): a client may burst its whole per-period allowance, then gets one request
per `period / limit`. Redis runs the script atomically on its own clock, so concurrent requests
on any number of hosts can never overshoot. A refused request is 429 `throttled` with
`Retry-After` (whole seconds until the next request would be allowed).

The rate is REST_FRAMEWORK's DEFAULT_THROTTLE_RATES["client"] (default 1000/min), or the
client's entry in API_THROTTLE_RATES_BY_CLIENT (by slug). Requests without an API key (health,
provider callbacks) are not throttled here. If Redis cannot be reached the throttle fails open.

The same call reads the client's configuration generation (config_generation.py) for an
allowed request, and the request carries it: what lets a send use the process's copy of its
templates without a round trip of its own.

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

from .config_generation import (
    TOKEN_TTL_SECONDS,
    client_generation_key,
    new_token,
    remember_client_generation,
)
from .limits_store import limits_redis

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}

# KEYS[1]: the client's key; KEYS[2] (optional): the client's configuration generation
# (config_generation.py). ARGV: emission interval (µs), burst window (µs); with KEYS[2], a new
# token and its TTL (s) to set if it has none. Returns {allowed (0/1), wait µs, generation}.
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
local generation = false
if KEYS[2] then
  generation = redis.call('GET', KEYS[2])
  if not generation then
    generation = ARGV[3]
    redis.call('SET', KEYS[2], generation, 'EX', ARGV[4])
  end
end
return {1, 0, generation}
"""

LIMIT_REJECTIONS = Counter(
    "notifyhub_api_limit_rejections", "API requests refused by a limit (throttled, quota_exceeded).",
    ["reason"],
)

_lock = threading.Lock()
_last_warning = 0.0


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
    return throttle_hit_reading(key=key, limit=limit, period_seconds=period_seconds)[0]


def throttle_hit_reading(*, key: str, limit: int, period_seconds: int,
                         generation_key: str | None = None) -> tuple[float, str | None]:
    """`throttle_hit`, plus (when allowed) the token at `generation_key` in the same call,
    set to a new one if it has none (config_generation.py): (wait, token or None)."""
    period_us = period_seconds * 1_000_000
    interval_us = max(period_us // max(limit, 1), 1)
    if generation_key is None:
        reply = script(_GCRA)(keys=[key], args=[interval_us, period_us])
    else:
        reply = script(_GCRA)(keys=[key, generation_key],
                              args=[interval_us, period_us, new_token(), TOKEN_TTL_SECONDS])
    if not int(reply[0]):
        return int(reply[1]) / 1_000_000, None
    token = reply[2] if len(reply) > 2 else None
    return 0.0, token.decode() if isinstance(token, bytes) else token


class WindowThrottle(BaseThrottle):
    """A DRF throttle over `throttle_hit`: `counted(request)` says which rate and key a request
    counts against (None: not throttled here). Fails open, logged, if Redis is down."""

    what = "API throttle"  # in the fail-open warning

    def __init__(self) -> None:
        self._wait: float | None = None

    def counted(self, request: Any) -> tuple[str, str] | None:
        """(rate such as '1000/min', key) or None."""
        raise NotImplementedError

    def generation_key(self, request: Any) -> str | None:
        """A configuration generation to read in the same call (config_generation.py)."""
        return None

    def allow_request(self, request: Any, view: Any) -> bool:
        counted = self.counted(request)
        if counted is None:
            return True
        rate, key = counted
        limit, period = parse_rate(rate)
        try:
            wait, token = throttle_hit_reading(key=key, limit=limit, period_seconds=period,
                                               generation_key=self.generation_key(request))
        except redis.RedisError as exc:
            warn_failing_open(self.what, exc)
            return True
        if wait <= 0:
            if token is not None:
                remember_client_generation(request, token)
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

    def generation_key(self, request: Any) -> str | None:
        return client_generation_key(request.user.pk)
