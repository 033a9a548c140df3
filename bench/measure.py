"""Measuring: HTTP accept calls, waiting for deliveries to move, and the numbers read back
from the database afterwards. Needs Django set up (imported after `django.setup()`)."""

from __future__ import annotations

import http.client
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection

from .processes import log

SENT_OR_LATER = ("sent", "delivered", "bounced")
# Nothing more will happen to these without a provider receipt or a person.
FINAL = ("delivered", "bounced", "failed", "suppressed", "cancelled")


# Receipts are given up on when every delivery is sent, the sandbox has had no callback left
# to send for this long, and still some deliveries are not final.
RECEIPT_STALL_SECONDS = 2.0


class PhaseTimeout(RuntimeError):
    pass


def recipients_for(prefix: str, count: int) -> list[dict[str, str]]:
    return [{"id": f"{prefix}{i}", "email": f"{prefix}{i}@example.com"} for i in range(count)]


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass(frozen=True)
class HttpApi:
    host: str
    port: int
    api_key: str
    timeout: float = 120.0

    def post_notification(self, body: bytes) -> tuple[dict[str, Any], float]:
        """POST /api/v1/notifications; returns the 202 body and the round trip in seconds."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            started = time.perf_counter()
            conn.request("POST", "/api/v1/notifications", body=body, headers={
                "Authorization": f"Bearer {self.api_key}",
                "Content-Type": "application/json",
                "Content-Length": str(len(body)),
            })
            response = conn.getresponse()
            raw = response.read()
            elapsed = time.perf_counter() - started
        finally:
            conn.close()
        if response.status != 202:
            raise RuntimeError(
                f"POST /api/v1/notifications -> HTTP {response.status}: {raw[:500]!r}"
            )
        return json.loads(raw), elapsed


def send_body(recipients: Sequence[str | dict[str, str]], template_id: str,
              variables: dict[str, Any]) -> bytes:
    """A send request's body; recipients inline (dicts) or by external id (str)."""
    return json.dumps({
        "recipients": list(recipients), "template_id": template_id, "variables": variables,
        "priority": "normal",
    }).encode()


def summary_ms(seconds: Sequence[float]) -> dict[str, Any]:
    ms = [round(s * 1000, 1) for s in seconds]
    return {
        "min": min(ms), "median": round(statistics.median(ms), 1), "max": max(ms), "runs": ms,
    }


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


# -- progress -------------------------------------------------------------------------------

_PROGRESS_SQL = """
SELECT count(*) AS total,
       count(*) FILTER (WHERE status IN ('sent', 'delivered', 'bounced')) AS sent,
       count(*) FILTER (WHERE status IN ('delivered', 'bounced', 'failed', 'suppressed', 'cancelled'))
           AS final,
       count(*) FILTER (WHERE status = 'delivered') AS delivered,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM notifications_delivery
WHERE notification_id = ANY(%s::uuid[])
"""


@dataclass(frozen=True)
class Progress:
    total: int
    sent: int  # sent or later (delivered, bounced)
    final: int
    delivered: int
    failed: int


def progress(notification_ids: Sequence[str]) -> Progress:
    with connection.cursor() as cursor:
        cursor.execute(_PROGRESS_SQL, [list(notification_ids)])
        row = cursor.fetchone()
    return Progress(*(int(v) for v in row))


def status_counts(notification_ids: Sequence[str]) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status, count(*) FROM notifications_delivery "
            "WHERE notification_id = ANY(%s::uuid[]) GROUP BY status ORDER BY status",
            [list(notification_ids)],
        )
        return {str(status): int(n) for status, n in cursor.fetchall()}


def wait_for_deliveries(
    *,
    label: str,
    notification_ids: Sequence[str],
    expected: int,
    deadline: float,
    context: Callable[[], str],
    interval: float = 0.1,
    receipts: bool = True,
    callbacks_pending: Callable[[], int] | None = None,
) -> tuple[float, float, int, bool]:
    """Polls until all `expected` deliveries are sent-or-later, then until all are final.
    Returns the monotonic times both were first seen, the number of polls and whether it
    gave up on receipts: once all are sent, `callbacks_pending()` (the sandbox's callbacks
    scheduled, buffered or in flight) staying 0 for RECEIPT_STALL_SECONDS means the missing
    receipts will never come (the pipeline dropped them), so it stops there instead of at the
    deadline. Raises PhaseTimeout at `deadline`. Without `receipts` (a provider that reports
    nothing after accepting, like FCM) `sent` is as far as a delivery goes: done when all are
    sent or failed."""
    sent_seen: float | None = None
    last_log = 0.0
    idle_since: float | None = None
    last_idle_check = 0.0
    polls = 0
    while True:
        now = time.monotonic()
        state = progress(notification_ids)
        polls += 1
        if sent_seen is None and state.total >= expected and state.sent + state.failed >= expected:
            sent_seen = now
            if not receipts:
                log(f"{label}: {state.sent}/{expected} sent"
                    + (f", {state.failed} failed" if state.failed else ""))
                return now, now, polls, False
        if state.total >= expected and state.final >= expected:
            log(f"{label}: {state.delivered}/{expected} delivered"
                + (f", {state.failed} failed" if state.failed else ""))
            return sent_seen or now, now, polls, False
        if sent_seen is not None and callbacks_pending is not None and now - last_idle_check >= 0.5:
            last_idle_check = now
            if callbacks_pending() > 0:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= RECEIPT_STALL_SECONDS:
                log(f"{label}: {expected - state.final} deliveries still wait for a receipt the "
                    "provider already sent (no callback left); giving up on them")
                return sent_seen, now, polls, True
        if now - last_log >= 2.0:
            log(f"{label}: {state.sent}/{expected} sent"
                + (f", {state.delivered}/{expected} delivered" if receipts else "")
                + (f", {state.failed} failed" if state.failed else ""))
            last_log = now
        if now > deadline:
            raise PhaseTimeout(
                f"{label}: timed out; statuses {status_counts(notification_ids)} "
                f"(expected {expected} deliveries)\n{context()}"
            )
        time.sleep(interval)


# -- results --------------------------------------------------------------------------------

_RESULT_SQL = """
SELECT max(d.sent_at),
       max(d.completed_at) FILTER (WHERE d.status = 'delivered'),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.sent_at - n.created_at)),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM d.sent_at - n.created_at)),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.completed_at - n.created_at))
           FILTER (WHERE d.status = 'delivered'),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM d.completed_at - n.created_at))
           FILTER (WHERE d.status = 'delivered'),
       count(*) FILTER (WHERE d.status = 'delivered' AND d.completed_at < d.sent_at)
FROM notifications_delivery d
JOIN notifications_notification n ON n.id = d.notification_id
WHERE d.notification_id = ANY(%s::uuid[])
"""


def _ms(value: Any) -> float | None:
    return None if value is None else round(float(value) * 1000, 1)


def _since(moment: datetime | None, start: datetime) -> float | None:
    return None if moment is None else (moment - start).total_seconds()


def e2e_result(
    *,
    notification_ids: Sequence[str],
    expected: int,
    started_at: datetime,
    accept_seconds: float,
    sent_seen: float,
    final_seen: float,
    t0: float,
    receipts: bool = True,
) -> dict[str, Any]:
    """The phase's numbers. Wall times come from the rows themselves (the latest `sent_at`,
    and the latest receipt applied to a `delivered` delivery) relative to the first accept
    call; the polling times are kept as a cross-check. Without `receipts` the numbers about
    delivery are left out (there is nothing to measure them by)."""
    counts = status_counts(notification_ids)
    with connection.cursor() as cursor:
        cursor.execute(_RESULT_SQL, [list(notification_ids)])
        (last_sent, last_delivered, sent_p50, sent_p95, dlv_p50, dlv_p95,
         receipt_first) = cursor.fetchone()
    sent_n = sum(counts.get(s, 0) for s in SENT_OR_LATER)
    delivered_n = counts.get("delivered", 0)
    sent_s = _since(last_sent, started_at)
    if sent_s is None:
        sent_s = sent_seen - t0
    delivered_s = _since(last_delivered, started_at)
    if delivered_s is None:
        delivered_s = final_seen - t0
    result: dict[str, Any] = {
        "deliveries": expected,
        "sends": len(notification_ids),
        "counts": counts,
        "sent": sent_n,
        "delivered": delivered_n,
        "failed": counts.get("failed", 0),
        # The provider's `delivered` receipt was applied before the worker recorded `sent`
        # (sent_at is when the outcome was written, not when the provider call returned).
        "delivered_before_sent_was_recorded": int(receipt_first),
        "sent_per_second": round(sent_n / sent_s, 1) if sent_s > 0 else None,
        "delivered_per_second": round(delivered_n / delivered_s, 1) if delivered_s > 0 else None,
        "wall_seconds": {
            "accept": round(accept_seconds, 3),
            "sent": round(sent_s, 3),
            "delivered": round(delivered_s, 3),
            "sent_observed_by_polling": round(sent_seen - t0, 3),
            "final_observed_by_polling": round(final_seen - t0, 3),
        },
        "latency_ms": {
            "accept_to_sent_p50": _ms(sent_p50),
            "accept_to_sent_p95": _ms(sent_p95),
            "accept_to_delivered_p50": _ms(dlv_p50),
            "accept_to_delivered_p95": _ms(dlv_p95),
        },
    }
    if not receipts:
        for key in ("delivered", "delivered_before_sent_was_recorded", "delivered_per_second"):
            del result[key]
        for key in ("delivered", "final_observed_by_polling"):
            del result["wall_seconds"][key]
        for key in ("accept_to_delivered_p50", "accept_to_delivered_p95"):
            del result["latency_ms"][key]
    return result


def event_counts(notification_ids: Sequence[str]) -> dict[str, int]:
    """DeliveryEvent rows by event name for these notifications' deliveries: how often each
    delivery was claimed, deferred (rate limit), sent, and which provider receipts arrived."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT e.event, count(*) FROM notifications_deliveryevent e "
            "JOIN notifications_delivery d ON d.id = e.delivery_id "
            "WHERE d.notification_id = ANY(%s::uuid[]) GROUP BY e.event ORDER BY e.event",
            [list(notification_ids)],
        )
        return {str(event): int(n) for event, n in cursor.fetchall()}


def db_activity(db_name: str) -> dict[str, int]:
    """Cumulative counters of the bench database (PostgreSQL publishes them with a delay of
    up to about a second, so deltas over a phase are approximate; `commits` includes the
    benchmark's own progress polls, reported next to it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted "
            "FROM pg_stat_database WHERE datname = %s",
            [db_name],
        )
        row = cursor.fetchone()
    keys = ("commits", "rollbacks", "rows_inserted", "rows_updated", "rows_deleted")
    return dict(zip(keys, (int(v) for v in row), strict=True)) if row else {}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}


def utc_from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
