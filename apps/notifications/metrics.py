"""Read-side numbers for the admin dashboard (and later the metrics API): bounded queries
over indexed time ranges, plus the broker's queue depths."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.core.queues import Queue

OUTCOME_EVENTS = ("sent", "delivered", "bounced", "failed", "retry_scheduled")


@dataclass
class Dashboard:
    minutes: list[str]
    outcomes: dict[str, list[float]]
    latency_ms: dict[str, list[float | None]]
    queue_depth: dict[str, float]
    totals: dict[str, int]
    delivered_rate: float | None


def _minutes(now: datetime, window: int) -> list[datetime]:
    end = now.replace(second=0, microsecond=0)
    return [end - timedelta(minutes=window - 1 - i) for i in range(window)]


def queue_depths() -> dict[str, float]:
    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1)
        pipe = client.pipeline()
        for queue in Queue:
            pipe.llen(queue.value)
        return {q.value: float(n) for q, n in zip(Queue, pipe.execute(), strict=True)}
    except redis.RedisError:
        return {}


def dashboard(*, window_minutes: int = 60, now: datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    buckets = _minutes(now, window_minutes)
    since = buckets[0]
    index = {b: i for i, b in enumerate(buckets)}
    outcomes = {name: [0.0] * window_minutes for name in OUTCOME_EVENTS}
    p50: list[float | None] = [None] * window_minutes
    p95: list[float | None] = [None] * window_minutes
    with connection.cursor() as cursor:
        # Event rows are append-only, so created_at (BRIN-indexed) follows insertion order.
        cursor.execute(
            """
            SELECT date_trunc('minute', created_at) AS minute, event, count(*)
            FROM notifications_deliveryevent
            WHERE created_at >= %s AND event = ANY(%s)
            GROUP BY 1, 2
            """,
            [since, list(OUTCOME_EVENTS)],
        )
        for minute, event, count in cursor.fetchall():
            if minute in index:
                outcomes[event][index[minute]] = float(count)
        cursor.execute(
            """
            SELECT date_trunc('minute', sent_at) AS minute,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY sent_at - created_at),
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY sent_at - created_at)
            FROM notifications_delivery
            WHERE sent_at >= %s
            GROUP BY 1
            """,
            [since],
        )
        for minute, median, high in cursor.fetchall():
            if minute in index:
                p50[index[minute]] = median.total_seconds() * 1000
                p95[index[minute]] = high.total_seconds() * 1000
    totals = {name: int(sum(values)) for name, values in outcomes.items()}
    finished = totals["delivered"] + totals["bounced"] + totals["failed"]
    return Dashboard(
        minutes=[b.strftime("%H:%M") for b in buckets],
        outcomes=outcomes,
        latency_ms={"p50": p50, "p95": p95},
        queue_depth=queue_depths(),
        totals=totals,
        delivered_rate=(totals["delivered"] / finished * 100) if finished else None,
    )
