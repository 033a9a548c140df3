"""Shared-state resilience primitives for provider calls, backed by Redis.

- :class:`CircuitBreaker` -- per provider account, closed / open / half-open, shared by all
  workers; fails open when Redis is unreachable.
- :class:`TokenBucket` -- per provider account rate limit, shared by all workers; never
  sleeps, tells the caller how long to defer; fails open when Redis is unreachable.

Both take a ``redis.Redis`` client (prefer a fail-fast one: no retries, short timeouts) and do
one Lua round trip per call on Redis server time. ``from_settings()`` builds them on a shared
fail-fast client from Django settings.
"""

from .breaker import CLOSED, HALF_OPEN, OPEN, UNKNOWN, CircuitBreaker, Decision
from .ratelimit import DEFAULT_RATES, Booking, Grant, TokenBucket

__all__ = [
    "CLOSED",
    "DEFAULT_RATES",
    "HALF_OPEN",
    "OPEN",
    "UNKNOWN",
    "Booking",
    "CircuitBreaker",
    "Decision",
    "Grant",
    "TokenBucket",
]
