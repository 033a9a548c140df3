"""Daily delivery quota per client: deliveries accepted per UTC day, counted in Redis.

One Lua script checks and adds atomically, so concurrent sends on any number of web processes
cannot overshoot: a request that would pass the quota is refused whole (429 `quota_exceeded`,
`Retry-After` = seconds until the next UTC midnight) and nothing is counted for it. Deliveries
are charged inside the send's transaction, after they are built; if the transaction then fails
they are refunded (`delivery_quota`). Scheduled deliveries count on the day they are accepted.

The quota is DAILY_DELIVERY_QUOTA, or the client's entry in DAILY_DELIVERY_QUOTA_BY_CLIENT (by
slug). If Redis cannot be reached the quota fails open (logged).

Test keys' sends never count against it: they have their own daily counter per client,
TEST_MODE_DAILY_DELIVERY_QUOTA (they cost workers and the sandbox, not providers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import redis
from django.conf import settings
from rest_framework import status

from apps.core.exceptions import ApplicationError

from .models import Client
from .throttling import LIMIT_REJECTIONS, script, warn_failing_open

# KEYS[1]: the client's counter for the day. ARGV: count, limit, ttl seconds.
# Returns {accepted (0/1), used after}.
_CONSUME = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local n = tonumber(ARGV[1])
if used + n > tonumber(ARGV[2]) then
  return {0, used}
end
used = redis.call('INCRBY', KEYS[1], n)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, used}
"""


class QuotaExceeded(ApplicationError):
    status_code: int = status.HTTP_429_TOO_MANY_REQUESTS
    code = "quota_exceeded"

    def __init__(self, message: str, *, retry_after: int, fields: dict[str, list[str]]) -> None:
        super().__init__(message, fields=fields)
        self.retry_after = retry_after


def daily_delivery_quota(*, client: Client, is_test: bool = False) -> int:
    if is_test:
        return int(settings.TEST_MODE_DAILY_DELIVERY_QUOTA)
    return int(settings.DAILY_DELIVERY_QUOTA_BY_CLIENT.get(client.slug, settings.DAILY_DELIVERY_QUOTA))


def _day_key(client: Client, now: datetime, is_test: bool = False) -> str:
    mode = ":test" if is_test else ""
    return f"notifyhub:quota{mode}:{client.pk}:{now:%Y%m%d}"


def seconds_until_utc_midnight(now: datetime) -> int:
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(int((midnight - now).total_seconds()) + 1, 1)


def deliveries_quota_consume(
    *, client: Client, count: int, now: datetime | None = None, is_test: bool = False
) -> int:
    """Charges `count` deliveries to today's quota (a test key's: the test counter); returns
    today's total. Raises QuotaExceeded (429) without charging anything if they do not all
    fit."""
    if count <= 0:
        return 0
    now = now or datetime.now(UTC)
    limit = daily_delivery_quota(client=client, is_test=is_test)
    try:
        accepted, used = script(_CONSUME)(keys=[_day_key(client, now, is_test)],
                                          args=[count, limit, 2 * 86_400])
    except redis.RedisError as exc:
        warn_failing_open("daily delivery quota", exc)
        return 0
    if not int(accepted):
        left = max(limit - int(used), 0)
        LIMIT_REJECTIONS.labels("quota_exceeded").inc()
        raise QuotaExceeded(
            f"Daily {'test-mode ' if is_test else ''}delivery quota reached: this request "
            f"needs {count} deliveries, "
            f"{left} of {limit} are left today (UTC).",
            retry_after=seconds_until_utc_midnight(now),
            fields={"quota": [f"{left} of {limit} deliveries left until 00:00 UTC."]},
        )
    return int(used)


def deliveries_quota_refund(
    *, client: Client, count: int, now: datetime | None = None, is_test: bool = False
) -> None:
    if count <= 0:
        return
    now = now or datetime.now(UTC)
    try:
        script("return redis.call('DECRBY', KEYS[1], ARGV[1])")(
            keys=[_day_key(client, now, is_test)], args=[count])
    except redis.RedisError as exc:
        warn_failing_open("daily delivery quota refund", exc)


def deliveries_quota_used(
    *, client: Client, now: datetime | None = None, is_test: bool = False
) -> int:
    now = now or datetime.now(UTC)
    try:
        return int(script("return redis.call('GET', KEYS[1]) or '0'")(
            keys=[_day_key(client, now, is_test)]))
    except redis.RedisError:
        return 0


@contextmanager
def delivery_quota(*, client: Client, is_test: bool = False) -> Iterator[Callable[[int], None]]:
    """Yields `charge(count)`; whatever was charged is refunded if the block raises. A test
    key's sends (`is_test`) are charged to the test-mode counter, never the daily quota.

    Enter it outside the send's transaction (`with delivery_quota(...) as charge,
    transaction.atomic():`) so a failed commit is refunded too."""
    now = datetime.now(UTC)
    charged = 0

    def charge(count: int) -> None:
        nonlocal charged
        deliveries_quota_consume(client=client, count=count, now=now, is_test=is_test)
        charged += count

    try:
        yield charge
    except BaseException:
        deliveries_quota_refund(client=client, count=charged, now=now, is_test=is_test)
        raise
