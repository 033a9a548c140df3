"""A notification's status is derived from its deliveries; this keeps the stored copy true."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection, transaction

_REFRESH_SQL = """
UPDATE notifications_notification AS n
SET status = agg.new_status,
    completed_at = CASE WHEN agg.new_status IN ('completed', 'partially_failed', 'failed', 'cancelled')
                        THEN COALESCE(n.completed_at, now()) ELSE NULL END,
    updated_at = now()
FROM (
    SELECT notification_id,
        CASE
            WHEN count(*) FILTER (WHERE status IN ('pending', 'queued', 'sending', 'retrying')) > 0 THEN
                CASE WHEN count(*) FILTER (WHERE status NOT IN ('pending', 'queued', 'scheduled')) > 0
                     THEN 'processing' ELSE 'pending' END
            WHEN count(*) FILTER (WHERE status = 'scheduled') > 0 THEN 'scheduled'
            WHEN count(*) = count(*) FILTER (WHERE status = 'cancelled') THEN 'cancelled'
            WHEN count(*) FILTER (WHERE status IN ('failed', 'bounced')) = 0 THEN 'completed'
            WHEN count(*) FILTER (WHERE status IN ('sent', 'delivered')) = 0 THEN 'failed'
            ELSE 'partially_failed'
        END AS new_status
    FROM notifications_delivery
    WHERE notification_id = ANY(%s)
    GROUP BY notification_id
) AS agg
WHERE n.id = agg.notification_id AND n.status IS DISTINCT FROM agg.new_status
"""


def notifications_refresh_status(*, notification_ids: Iterable[object]) -> None:
    """Recomputes the stored status of these notifications from their deliveries.

    The rows are locked first, so the aggregate (a fresh snapshot taken after the lock) sees
    every delivery change committed before it: the last refresh to run is always right.
    """
    ids = sorted({str(i) for i in notification_ids})
    if not ids:
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM notifications_notification WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE",
            [ids],
        )
        cursor.execute(_REFRESH_SQL.replace("ANY(%s)", "ANY(%s::uuid[])"), [ids])
