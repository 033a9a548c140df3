"""A token bucket shared by all workers through Redis: one per provider account.

The bucket holds up to ``burst`` tokens and refills continuously at ``rate_per_second``
(fractional tokens accrue; only whole tokens are handed out). Refill and take happen in one
Lua script on Redis server time, so workers on different hosts agree and never over-grant.

Nothing sleeps or spins: ``acquire`` answers how many tokens were granted now and, if fewer
than asked, how long until the next token (``wait_seconds``); the caller defers the rest of
its work by that much (e.g. a Celery ``countdown``).

``reserve`` books tokens ahead: the balance may go negative (a queue of booked tokens, at most
``max_wait`` seconds of refill deep) and the answer says when each booked token is produced.
Work deferred until then spends its booking instead of asking again, so deferred work of every
worker lines up behind the others once, instead of all coming back together to fight for the
next token (and being deferred again, and again).

If Redis is unreachable the bucket fails open -- everything asked for is granted, with
``Grant.fail_open`` set -- and logs at most once a minute per bucket: the limiter being down
must not stop delivery (the provider's own 429s are the backstop).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Final

import redis

from ._redis import RedisGuard, client_from_settings

log = logging.getLogger(__name__)

#: Seed per-account limits (requests per second) by provider, used by ``from_settings`` when
#: ``settings.PROVIDER_RATE_LIMITS`` does not name the account or provider.
DEFAULT_RATES: Final[dict[str, float]] = {"twilio": 100.0, "sendgrid": 500.0, "whatsapp": 80.0}

#: Idle buckets expire after twice the time to fill them, but never sooner than this.
MIN_IDLE_TTL_SECONDS: Final = 60

# Both scripts start here: the bucket's balance now (`tokens`, refilled since `ts`), `now` in
# microseconds of Redis' clock (exact below 2^53); a bucket never seen starts full.
_REFILL: Final = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local v = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(v[1])
local ts = tonumber(v[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate / 1000000)
"""

# KEYS: bucket hash (tokens, ts_us). ARGV: rate per second, burst, n, all_or_nothing (0/1),
# ttl_ms. Returns {granted, wait_us}.
_SCRIPT: Final = r"""
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local all_or_nothing = ARGV[4] == '1'
local ttl_ms = tonumber(ARGV[5])

""" + _REFILL + r"""

local granted
if all_or_nothing then
  if tokens >= n then granted = n else granted = 0 end
else
  -- tokens is negative while booked tokens (``reserve``) are outstanding
  granted = math.max(0, math.min(n, math.floor(tokens)))
end
tokens = tokens - granted

local wait_us = 0
if granted < n then
  -- Partial: until the next whole token. All-or-nothing: until all n are there.
  local missing = 1 - tokens
  if all_or_nothing then missing = n - tokens end
  wait_us = math.ceil(missing * 1000000 / rate)
end

redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'ts', string.format('%d', now))
-- a bucket in debt must outlive its bookings
local debt_ms = 0
if tokens < 0 then debt_ms = math.ceil(-tokens * 1000 / rate) end
redis.call('PEXPIRE', key, ttl_ms + debt_ms)
return {granted, wait_us}
"""

# KEYS: bucket hash. ARGV: rate per second, burst, n, max_wait_us, ttl_ms.
# Books up to n tokens (the balance may go negative), no later than max_wait_us from now.
# Returns {booked, first_us}: the k-th booked token (k = 1..booked) is produced at
# first_us + (k - 1) * 1e6 / rate from now (first_us <= 0: available already).
_RESERVE_SCRIPT: Final = r"""
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local max_wait_us = tonumber(ARGV[4])
local ttl_ms = tonumber(ARGV[5])

""" + _REFILL + r"""

-- token k is there when the balance has refilled to k: (k - tokens) / rate from now
local booked = math.floor(max_wait_us * rate / 1000000 + tokens)
if booked > n then booked = n end
if booked < 0 then booked = 0 end
local first_us = math.ceil((1 - tokens) * 1000000 / rate)
tokens = tokens - booked

redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'ts', string.format('%d', now))
local debt_ms = 0
if tokens < 0 then debt_ms = math.ceil(-tokens * 1000 / rate) end
redis.call('PEXPIRE', key, ttl_ms + debt_ms)
return {booked, first_us}
"""


@dataclass(frozen=True, slots=True)
class Grant:
    """The answer of :meth:`TokenBucket.acquire`.

    ``granted``: tokens taken now (0..requested); do that much work now. ``wait_seconds``:
    when ``granted < requested``, seconds until the next token (for all-or-nothing: until
    all requested tokens) is available -- defer the remainder by this much; 0.0 otherwise.
    ``fail_open``: Redis was unreachable and the grant was not actually rate-limited.
    """

    granted: int
    requested: int
    wait_seconds: float = 0.0
    fail_open: bool = False

    @property
    def complete(self) -> bool:
        """True if every requested token was granted."""
        return self.granted >= self.requested

    def __bool__(self) -> bool:
        return self.complete


@dataclass(frozen=True, slots=True)
class Booking:
    """The answer of :meth:`TokenBucket.reserve`: ``booked`` tokens, the k-th of which
    (k = 1..booked) is produced ``at(k)`` seconds from now. ``fail_open``: Redis was
    unreachable; nothing was booked (defer by ``at`` all the same)."""

    booked: int
    requested: int
    first_seconds: float
    rate_per_second: float
    fail_open: bool = False

    def at(self, k: int) -> float:
        return max(self.first_seconds + (k - 1) / self.rate_per_second, 0.0)


class TokenBucket:
    """A Redis-shared token bucket (see the module docstring). One round trip per call.

    As with the circuit breaker, give it a fail-fast client (no retries, short timeouts);
    :meth:`from_settings` does.
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        name: str,
        rate_per_second: float,
        burst: int | None = None,
        *,
        key_prefix: str = "notifyhub:rl",
    ) -> None:
        """``burst`` (bucket capacity) defaults to ``ceil(rate_per_second)``, at least 1.
        A fresh (or expired) bucket starts full."""
        if not name:
            raise ValueError("name must be non-empty")
        if not rate_per_second > 0 or math.isinf(rate_per_second):
            raise ValueError("rate_per_second must be a positive finite number")
        if burst is None:
            burst = max(1, math.ceil(rate_per_second))
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.name = name
        self.rate_per_second = float(rate_per_second)
        self.burst = int(burst)
        #: Idle keys expire after 2x the time to fill the bucket, min 60 s; an expired bucket
        #: is simply full again, which is exactly what it would be after that long anyway.
        self.idle_ttl_seconds = max(MIN_IDLE_TTL_SECONDS, math.ceil(2 * self.burst / self.rate_per_second))
        self._key = f"{key_prefix}:{{{name}}}"
        self._redis = redis_client
        self._script = redis_client.register_script(_SCRIPT)
        self._reserve_script = redis_client.register_script(_RESERVE_SCRIPT)
        self._guard = RedisGuard(redis_client, "rate limiter", name, log)

    @classmethod
    def from_settings(cls, name: str, **overrides: Any) -> TokenBucket:
        """A bucket for provider account ``name`` (``"<provider>:<account>"``) on the shared
        fail-fast client.

        Rate and burst: ``settings.PROVIDER_RATE_LIMITS[name]``, else ``[<provider>]``, else
        the rate the provider's folder declares (providers/registry.py ``default_rate``), else
        :data:`DEFAULT_RATES` ``[<provider>]``; an entry is a number (rate) or a dict of
        ``rate_per_second`` / ``burst``. ``overrides`` win over all of these. Raises
        ``KeyError`` if no rate is known.
        """
        from django.conf import settings  # lazy

        configured: dict[str, Any] = getattr(settings, "PROVIDER_RATE_LIMITS", {})
        provider = name.split(":", 1)[0]
        entry: Any = configured.get(name, configured.get(provider))
        if entry is None:
            from apps.notifications.providers.registry import default_rate  # lazy

            entry = default_rate(provider)
        if entry is None:
            entry = DEFAULT_RATES.get(provider)
        options: dict[str, Any] = {}
        if isinstance(entry, dict):
            options.update(entry)
        elif entry is not None:
            options["rate_per_second"] = float(entry)
        options.update(overrides)
        if "rate_per_second" not in options:
            raise KeyError(f"no rate limit configured for {name!r}")
        return cls(client_from_settings(), name, **options)

    def acquire(self, n: int = 1) -> Grant:
        """Take up to ``n`` tokens now (refilling first by the elapsed server time).

        Returns how many were granted (0..n) and, if fewer than ``n``, the seconds until the
        next token. Never sleeps. Fails open (grants ``n``) if Redis is unreachable.
        """
        return self._acquire(n, all_or_nothing=False)

    def acquire_all_or_nothing(self, n: int) -> Grant:
        """Take exactly ``n`` tokens or none. If none, ``wait_seconds`` is when ``n`` tokens
        will have accumulated (assuming nobody else takes them). ``n`` must not exceed
        ``burst`` (it could never be satisfied)."""
        if n > self.burst:
            raise ValueError(f"n={n} exceeds burst={self.burst}; it could never be granted")
        return self._acquire(n, all_or_nothing=True)

    def reserve(self, n: int, max_wait_seconds: float = 300.0) -> Booking:
        """Book ``n`` tokens ahead (at most ``max_wait_seconds`` of refill away): the caller
        defers its k-th unit of work to ``Booking.at(k)`` and then spends the booking without
        asking the bucket again. Tokens beyond the horizon are not booked (``booked < n``).
        Fails open (books nothing, every ``at`` is 0) if Redis is unreachable."""
        if n < 1:
            raise ValueError("n must be >= 1")
        if not self._guard.available():
            return Booking(0, n, 0.0, self.rate_per_second, fail_open=True)
        args: list[str | int] = [
            repr(self.rate_per_second), self.burst, n, round(max_wait_seconds * 1_000_000),
            self.idle_ttl_seconds * 1000,
        ]
        try:
            booked, first_us = self._reserve_script(keys=[self._key], args=args)
        except redis.RedisError as exc:
            self._guard.failed(exc, "reserve")
            return Booking(0, n, 0.0, self.rate_per_second, fail_open=True)
        self._guard.recovered()
        return Booking(int(booked), n, int(first_us) / 1_000_000, self.rate_per_second)

    def reset(self) -> None:
        """Refill the bucket (delete its state). Raises ``redis.RedisError`` if unreachable."""
        self._redis.delete(self._key)

    def _acquire(self, n: int, *, all_or_nothing: bool) -> Grant:
        if n < 1:
            raise ValueError("n must be >= 1")
        if not self._guard.available():
            return Grant(n, n, 0.0, fail_open=True)
        args: list[str | int] = [
            repr(self.rate_per_second), self.burst, n, int(all_or_nothing), self.idle_ttl_seconds * 1000
        ]
        try:
            granted, wait_us = self._script(keys=[self._key], args=args)
        except redis.RedisError as exc:
            self._guard.failed(exc, "acquire")
            return Grant(n, n, 0.0, fail_open=True)
        self._guard.recovered()
        return Grant(int(granted), n, int(wait_us) / 1_000_000)

    def __repr__(self) -> str:
        return f"<TokenBucket {self.name!r} {self.rate_per_second:g}/s burst {self.burst}>"
