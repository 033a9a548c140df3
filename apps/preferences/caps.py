"""Frequency caps: at most N deliveries of a category to a recipient per local hour/day/week.

Counted in Redis, one set per recipient, category and period window
(`notifyhub:prefcap:<recipient>:<category>:<period>:<window>`) holding the ids of the deliveries
it admitted, with an EXPIRE past the window's end. A set rather than INCR because dispatch may
decide the same delivery more than once (rate-limit deferrals, retries, a redelivered task
message): a delivery already admitted in the window is admitted again without counting twice.
Check and reserve are one Lua call (atomic across workers); a batch is one pipelined round trip.

Redis unavailable → the cap fails open (the delivery is allowed) with a rate-limited warning,
like the provider gates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis

from apps.notifications.resilience._redis import RedisGuard, client_from_settings

logger = logging.getLogger(__name__)

# KEYS[1] the window's set; ARGV: delivery id, limit, ttl seconds. 1 = admitted, 0 = capped.
_RESERVE = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


@dataclass(frozen=True)
class CapRequest:
    key: str
    delivery_id: str
    limit: int
    ttl: int


def cap_key(*, recipient_id: str, category: str, period: str, window: str,
            is_test: bool = False) -> str:
    mode = ":test" if is_test else ""  # test keys' sends count in windows of their own
    return f"notifyhub:prefcap{mode}:{recipient_id}:{category}:{period}:{window}"


def _client() -> redis.Redis:
    return client_from_settings()


def caps_reserve(requests: Sequence[CapRequest]) -> list[bool]:
    """Admits or refuses each request, in order (a refused one reserves nothing)."""
    if not requests:
        return []
    client = _client()
    guard = RedisGuard(client, "frequency_cap", "preferences", logger)
    if not guard.available():
        return [True] * len(requests)
    try:
        script = client.register_script(_RESERVE)
        pipe = client.pipeline(transaction=False)
        for item in requests:
            script(keys=[item.key], args=[item.delivery_id, item.limit, item.ttl], client=pipe)
        answers = pipe.execute()
    except redis.RedisError as exc:
        guard.failed(exc, "frequency cap not enforced")
        return [True] * len(requests)
    guard.recovered()
    return [bool(int(answer)) for answer in answers]


def caps_release(items: Iterable[tuple[str, str]]) -> None:
    """Gives back reservations: (cap key, delivery id) pairs."""
    pairs = [(key, did) for key, did in items if key]
    if not pairs:
        return
    client = _client()
    try:
        pipe = client.pipeline(transaction=False)
        for key, delivery_id in pairs:
            pipe.srem(key, delivery_id)
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("frequency caps: could not release %d reservations: %s", len(pairs), exc)


def caps_count(key: str) -> int:
    """How many deliveries a window has admitted (admin, tests)."""
    return int(_client().scard(key))
