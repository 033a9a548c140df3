"""Reads behind the metrics API: per client where the data is the client's, bounded in time.

Per-client queries filter `client_id`, `status = ANY(every status)` and `created_at >= since`,
which the (client, status, -created_at) index answers as one range scan per status — no
sequential scan however large the table. System-wide numbers (queue depths, breakers) are not
per client.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.clients.models import Client

from .. import gate
from ..metrics import queue_depths
from ..models import DeliveryStatus
from ..providers.registry import get_provider

logger = logging.getLogger(__name__)

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
ALL_STATUSES = [s.value for s in DeliveryStatus]
IN_FLIGHT = ["scheduled", "pending", "queued", "sending", "retrying"]


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def delivery_rates(
    *, client: Client, window: str, is_test: bool, now: datetime | None = None
) -> dict[str, Any]:
    """Deliveries of one mode (live or test) accepted in the window, per channel: counts per
    status and their shares; `delivery_rate` = delivered / (delivered + bounced + failed)."""
    now = now or timezone.now()
    since = now - WINDOWS[window]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT channel, status, count(*) FROM notifications_delivery
            WHERE client_id = %s AND status = ANY(%s) AND created_at >= %s AND is_test = %s
            GROUP BY 1, 2 ORDER BY 1, 2
            """,
            [client.id, ALL_STATUSES, since, is_test],
        )
        rows = cursor.fetchall()
    channels: dict[str, dict[str, int]] = {}
    for channel, status, count in rows:
        channels.setdefault(channel, {})[status] = int(count)

    def summary(counts: dict[str, int]) -> dict[str, Any]:
        total = sum(counts.values())
        finished = sum(counts.get(s, 0) for s in ("delivered", "bounced", "failed"))
        return {
            "total": total,
            "counts": counts,
            "rates": {status: _rate(n, total) for status, n in counts.items()},
            "delivery_rate": _rate(counts.get("delivered", 0), finished),
        }

    overall: dict[str, int] = {}
    for counts in channels.values():
        for status, n in counts.items():
            overall[status] = overall.get(status, 0) + n
    return {
        "window": window,
        "since": since,
        "until": now,
        "overall": summary(overall),
        "channels": [{"channel": c, **summary(counts)} for c, counts in sorted(channels.items())],
    }


def channel_performance(
    *, client: Client, window: str, is_test: bool, now: datetime | None = None
) -> dict[str, Any]:
    """Per channel and provider, for deliveries of one mode accepted in the window that reached
    a provider: sent, delivered, failed (failed + bounced) and accept → sent latency."""
    now = now or timezone.now()
    since = now - WINDOWS[window]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT channel, provider,
                   count(*) FILTER (WHERE sent_at IS NOT NULL),
                   count(*) FILTER (WHERE status = 'delivered'),
                   count(*) FILTER (WHERE status IN ('failed', 'bounced')),
                   percentile_cont(0.5) WITHIN GROUP (
                       ORDER BY EXTRACT(EPOCH FROM sent_at - created_at))
                       FILTER (WHERE sent_at IS NOT NULL),
                   percentile_cont(0.95) WITHIN GROUP (
                       ORDER BY EXTRACT(EPOCH FROM sent_at - created_at))
                       FILTER (WHERE sent_at IS NOT NULL)
            FROM notifications_delivery
            WHERE client_id = %s AND status = ANY(%s) AND created_at >= %s AND provider <> ''
              AND is_test = %s
            GROUP BY 1, 2 ORDER BY 1, 2
            """,
            [client.id, ALL_STATUSES, since, is_test],
        )
        rows = cursor.fetchall()

    def ms(seconds: Any) -> float | None:
        return round(float(seconds) * 1000, 1) if seconds is not None else None

    return {
        "window": window,
        "since": since,
        "until": now,
        "providers": [
            {
                "channel": channel, "provider": provider, "sent": int(sent),
                "delivered": int(delivered), "failed": int(failed),
                "latency_ms": {"p50": ms(p50), "p95": ms(p95)},
            }
            for channel, provider, sent, delivered, failed, p50, p95 in rows
        ],
    }


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        logger.exception("system status: database")
        return False


def _broker_ok() -> bool:
    try:
        redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2).ping()
        return True
    except redis.RedisError:
        logger.exception("system status: broker")
        return False


def provider_states() -> list[dict[str, Any]]:
    """Every provider of every channel: configured or not, and its breaker's state."""
    out = []
    for channel, names in settings.CHANNEL_PROVIDERS.items():
        for name in names:
            provider = get_provider(name)
            configured = provider.is_configured()
            if not settings.PROVIDER_GATES_ENABLED:
                breaker = "disabled"
            elif not configured:
                breaker = "not_configured"
            else:
                breaker = gate.breaker_for(gate.account_name(provider)).state()
            out.append({"channel": channel, "provider": name, "configured": configured,
                        "breaker": breaker})
    return out


def system_status() -> dict[str, Any]:
    checks = {"database": "ok" if _database_ok() else "unavailable",
              "broker": "ok" if _broker_ok() else "unavailable"}
    providers = provider_states()
    degraded = any(v != "ok" for v in checks.values()) or any(
        p["breaker"] in ("open", "half_open") for p in providers)
    return {
        "status": "degraded" if degraded else "ok",
        "checks": checks,
        "queues": queue_depths() if checks["broker"] == "ok" else {},
        "providers": providers,
    }


def queue_status(*, client: Client, is_test: bool) -> dict[str, Any]:
    """Broker depth per queue (all clients) and this client's deliveries of one mode still
    waiting, per priority and status."""
    depths = queue_depths()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT priority, status, count(*) FROM notifications_delivery
            WHERE client_id = %s AND status = ANY(%s) AND is_test = %s
            GROUP BY 1, 2 ORDER BY 1, 2
            """,
            [client.id, IN_FLIGHT, is_test],
        )
        rows = cursor.fetchall()
    backlog: dict[str, dict[str, int]] = {}
    for priority, status, count in rows:
        backlog.setdefault(priority, {})[status] = int(count)
    return {
        "broker": "ok" if depths else "unavailable",
        "queues": [{"name": name, "depth": int(depth)} for name, depth in depths.items()],
        "total": int(sum(depths.values())),
        "backlog": backlog,
    }
