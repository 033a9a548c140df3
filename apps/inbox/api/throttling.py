"""Per-recipient request throttle for the inbox API (INBOX_THROTTLE_RATE, default 300/min):
the GCRA of apps/clients/throttling.py keyed by the token's recipient, so one browser tab in a
loop cannot spend its client's API budget or load the database. Fails open if Redis is down."""

from __future__ import annotations

import math
from typing import Any

import redis
from django.conf import settings
from rest_framework.throttling import BaseThrottle

from apps.clients.throttling import LIMIT_REJECTIONS, parse_rate, throttle_hit, warn_failing_open

from ..tokens import InboxPrincipal


class InboxRecipientThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Any, view: Any) -> bool:
        principal = request.user
        rate = settings.INBOX_THROTTLE_RATE
        if not isinstance(principal, InboxPrincipal) or not rate:
            return True
        limit, period = parse_rate(rate)
        try:
            wait = throttle_hit(key=f"notifyhub:throttle:inbox:{principal.recipient_pk}",
                                limit=limit, period_seconds=period)
        except redis.RedisError as exc:
            warn_failing_open("inbox throttle", exc)
            return True
        if wait <= 0:
            return True
        LIMIT_REJECTIONS.labels("throttled").inc()
        self._wait = wait
        return False

    def wait(self) -> float | None:
        return float(max(math.ceil(self._wait), 1)) if self._wait is not None else None
