"""The API limits' Redis (`API_LIMITS_REDIS_URL`): the throttle's and the quotas' counters and
the clients' configuration generations live there."""

from __future__ import annotations

import redis
from django.conf import settings

from apps.core.redis_clients import shared_redis


def limits_redis() -> redis.Redis:
    """A client with short timeouts for throttle and quota counters."""
    return shared_redis(settings.API_LIMITS_REDIS_URL, connect_timeout=0.25, timeout=0.5,
                        health_check_interval=30)
