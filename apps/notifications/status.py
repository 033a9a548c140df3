"""A notification's status is derived from its deliveries; this keeps the stored copy true.

The refresh stores two things on the notification, under its row lock:

- `status`, always exact. It depends only on WHICH delivery statuses are present, so it is
  computed from at most 11 index probes (`EXISTS … WHERE notification_id = … AND status = …`
  on the (notification, status, …) index), whatever the number of deliveries.
- `counts` (deliveries per status), read by GET status and detail. A notification of at most
  `COUNTS_EXACT_LIMIT` deliveries (nearly all of them) is aggregated on every refresh: that
  aggregate is also what gives its status, one statement. A larger one is aggregated when no
  delivery of it is in flight any more (so its final counts are exact, and so are counts changed
  later by a receipt, a re-drive or an erasure) and at most once per `COUNTS_INTERVAL_SECONDS`
  while work is in flight; a refresh in between keeps the previous counts and marks them
  `counts_stale`. Readers (selectors.notification_counts) aggregate themselves when the counts
  are stale and older than the interval, so a read is never more than that interval behind.

Why: the refresh runs once per dispatch chunk (100 deliveries) and per receipt batch. For a
50,000-delivery notification a full aggregate per refresh is ~500 aggregates of 50,000 rows,
quadratic in its size; this is at most one per second while it is sent (~60) plus one per
refresh after the last delivery finished.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from .models import DeliveryStatus, NotificationStatus

COUNTS_EXACT_LIMIT = 2000
COUNTS_INTERVAL_SECONDS = 1.0

FINAL_NOTIFICATION_STATUSES = frozenset({
    NotificationStatus.COMPLETED, NotificationStatus.PARTIALLY_FAILED, NotificationStatus.FAILED,
    NotificationStatus.CANCELLED,
})
_ACTIVE = frozenset({"pending", "queued", "sending", "retrying"})
_IN_FLIGHT = _ACTIVE | {"scheduled"}
ALL_STATUSES = [s.value for s in DeliveryStatus]


def status_from_present(present: Iterable[str]) -> str | None:
    """The notification status for the set of delivery statuses it has (None: no delivery).
    The same rules the stored status always had: in flight → pending/processing, then
    scheduled, all cancelled, no failure → completed, no success → failed, else partially."""
    present = set(present)
    if not present:
        return None
    if present & _ACTIVE:
        return "processing" if present - {"pending", "queued", "scheduled"} else "pending"
    if "scheduled" in present:
        return "scheduled"
    if present <= {"cancelled"}:
        return "cancelled"
    if not present & {"failed", "bounced"}:
        return "completed"
    if not present & {"sent", "delivered"}:
        return "failed"
    return "partially_failed"


_UPDATE_SQL = """
UPDATE notifications_notification AS n
SET status = v.status,
    completed_at = CASE WHEN v.status IN ('completed', 'partially_failed', 'failed', 'cancelled')
                        THEN COALESCE(n.completed_at, v.now) ELSE NULL END,
    counts = CASE WHEN v.with_counts THEN v.counts ELSE n.counts END,
    counts_at = CASE WHEN v.with_counts THEN v.now ELSE n.counts_at END,
    counts_stale = NOT v.with_counts,
    updated_at = CASE WHEN n.status IS DISTINCT FROM v.status
                        OR (v.with_counts AND n.counts IS DISTINCT FROM v.counts)
                      THEN v.now ELSE n.updated_at END
FROM (SELECT * FROM jsonb_to_recordset(%s::jsonb)
        AS x(id uuid, status text, counts jsonb, with_counts boolean, now timestamptz)) AS v
WHERE n.id = v.id
  AND (n.status IS DISTINCT FROM v.status
       OR (v.with_counts AND (n.counts IS DISTINCT FROM v.counts OR n.counts_stale
                              OR n.counts_at IS NULL))
       OR (NOT v.with_counts AND NOT n.counts_stale))
"""


# The aggregate and the update in one statement (under the row locks the refresh took
# before): `status_from_present` in SQL, over the statuses the aggregate found.
# `n.id = ANY(ids)` again in the update: the planner cannot know how many rows the aggregate
# gives, and while the notifications table is small (a new service, the bench) it joined
# them by a sequential scan of the whole table, a plan a prepared statement keeps as the
# table grows.
_ACTIVE_SQL = "ARRAY['pending', 'queued', 'sending', 'retrying']"
_REFRESH_COUNTED_SQL = f"""
WITH c AS (
    SELECT notification_id AS id, status, count(*) AS n FROM notifications_delivery
    WHERE notification_id = ANY(%(ids)s::uuid[]) GROUP BY 1, 2
), a AS (
    SELECT id, jsonb_object_agg(status, n) AS counts, array_agg(status::text) AS present
    FROM c GROUP BY id
), s AS (
    SELECT id, counts, CASE
        WHEN present && {_ACTIVE_SQL} THEN
            CASE WHEN present <@ ARRAY['pending', 'queued', 'scheduled'] THEN 'pending'
                 ELSE 'processing' END
        WHEN 'scheduled' = ANY(present) THEN 'scheduled'
        WHEN present <@ ARRAY['cancelled'] THEN 'cancelled'
        WHEN NOT present && ARRAY['failed', 'bounced'] THEN 'completed'
        WHEN NOT present && ARRAY['sent', 'delivered'] THEN 'failed'
        ELSE 'partially_failed' END AS status
    FROM a
), v AS (
    SELECT id, counts, %(now)s::timestamptz AS now,
           CASE WHEN id = ANY(%(expanding)s::uuid[])
                     AND status IN ('completed', 'partially_failed', 'failed', 'cancelled')
                THEN 'processing' ELSE status END AS status
    FROM s
)
UPDATE notifications_notification AS n
SET status = v.status,
    completed_at = CASE WHEN v.status IN ('completed', 'partially_failed', 'failed', 'cancelled')
                        THEN COALESCE(n.completed_at, v.now) ELSE NULL END,
    counts = v.counts,
    counts_at = v.now,
    counts_stale = false,
    updated_at = CASE WHEN n.status IS DISTINCT FROM v.status
                        OR n.counts IS DISTINCT FROM v.counts
                      THEN v.now ELSE n.updated_at END
FROM v
WHERE n.id = v.id AND n.id = ANY(%(ids)s::uuid[])
  AND (n.status IS DISTINCT FROM v.status OR n.counts IS DISTINCT FROM v.counts
       OR n.counts_stale OR n.counts_at IS NULL)
"""


# LATERAL … LIMIT 1, not EXISTS: PostgreSQL may turn an EXISTS into a hash semi-join over
# the whole deliveries table (seconds at 10 million rows); this stays 11 index probes on the
# (notification, status, …) index. That the planner picks that index for a large notification
# it has no statistics for yet is migration 0015's doing.
PRESENT_SQL = (
    "SELECT n::text, s FROM unnest(%s::uuid[]) AS n, unnest(%s::text[]) AS s,"
    " LATERAL (SELECT 1 FROM notifications_delivery d"
    "          WHERE d.notification_id = n AND d.status = s LIMIT 1) AS hit"
)


def _present(cursor: Any, ids: list[str]) -> dict[str, set[str]]:
    """Which statuses each notification's deliveries have: one index probe per status."""
    cursor.execute(PRESENT_SQL, [ids, ALL_STATUSES])
    present: dict[str, set[str]] = {i: set() for i in ids}
    for notification_id, status in cursor.fetchall():
        present[notification_id].add(status)
    return present


def notifications_refresh_status(*, notification_ids: Iterable[object]) -> None:
    """Recomputes the stored status (and the counts, see the module docstring) of these
    notifications from their deliveries.

    The rows are locked first, so what is read after (a fresh snapshot per statement) sees
    every delivery change committed before it: the last refresh to run is always right.
    """
    ids = sorted({str(i) for i in notification_ids})
    if not ids:
        return
    now = timezone.now()
    cutoff = now - timedelta(seconds=COUNTS_INTERVAL_SECONDS)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT id::text, counts_at,"
            " (SELECT coalesce(sum(value::bigint), 0) FROM jsonb_each_text(counts)),"
            " accept_job_id IS NOT NULL"
            " FROM notifications_notification WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE",
            [ids],
        )
        rows = cursor.fetchall()
        # Still being expanded from its accept job (fanout.py): more deliveries are coming,
        # so what exists cannot make it final yet.
        expanding = {i for i, _, _, attached in rows if attached}
        # Small (or never counted, or counted long enough ago): aggregate. Large: probe first.
        full = [i for i, counts_at, total, _ in rows
                if total <= COUNTS_EXACT_LIMIT or counts_at is None or counts_at <= cutoff]
        counted = set(full)
        large = [i for i, _, _, _ in rows if i not in counted]
        updates: list[dict[str, Any]] = []
        if large:
            for i, present in _present(cursor, large).items():
                if present & _IN_FLIGHT:
                    updates.append({"id": i, "status": status_from_present(present),
                                    "counts": None, "with_counts": False})
                else:
                    full.append(i)
        if full:
            cursor.execute(_REFRESH_COUNTED_SQL, {"ids": full, "now": now,
                                                  "expanding": sorted(expanding)})
        for update in updates:
            update["now"] = now.isoformat()
            if update["id"] in expanding and update["status"] in FINAL_NOTIFICATION_STATUSES:
                update["status"] = NotificationStatus.PROCESSING.value
        updates = [u for u in updates if u["status"] is not None]
        if updates:
            cursor.execute(_UPDATE_SQL, [json.dumps(updates)])
