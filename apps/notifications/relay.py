"""The relay sweeper: the queue is a fast path, PostgreSQL is the truth.

Run by celery-beat. Finds in-flight deliveries whose lease ended (publish lost, broker message
lost, worker killed mid-send, scheduled time reached, retry countdown lost) and publishes them
again. The claim in dispatch makes a duplicate message harmless.

Two things make it look sooner than a lease: a publish that failed (broker down) ends the
lease of what it could not publish at once (`enqueue.deliveries_enqueue`), so the first sweep
after the broker's return re-publishes it; and a marker key kept in the broker tells when the
broker lost its data (restarted empty): then every pending, queued and retrying delivery is
re-published at once (`broker_data_check`).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.core.redis_clients import shared_redis
from apps.core.tasks import Publication
from apps.webhooks.outbound.events import STATUS_EVENTS
from apps.webhooks.outbound.outbox import (
    DeliveryEventItem,
    webhook_completions_record,
    webhook_events_record,
)

from . import instrumentation
from .enqueue import deliveries_publications
from .fanout import accept_jobs_sweep
from .models import RelayMarker
from .status import notifications_refresh_status

logger = logging.getLogger(__name__)

_SWEEP_SQL = """
WITH due AS (
    SELECT id, status AS old_status FROM notifications_delivery
    WHERE status IN ('pending', 'queued', 'sending', 'retrying', 'scheduled')
      AND lease_until <= %(now)s
    ORDER BY lease_until
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), moved AS (
    UPDATE notifications_delivery AS d
    SET status = CASE
            -- a delivery whose workers died on every attempt is a poison message: stop
            WHEN d.status = 'sending' AND d.attempts >= %(max_attempts)s THEN 'failed'
            WHEN d.status IN ('sending', 'scheduled') THEN 'queued'
            ELSE d.status END,
        error_code = CASE WHEN d.status = 'sending' AND d.attempts >= %(max_attempts)s
                          THEN 'worker_lost' ELSE d.error_code END,
        error_message = CASE WHEN d.status = 'sending' AND d.attempts >= %(max_attempts)s
                             THEN 'The worker sending it stopped on every attempt.'
                             ELSE d.error_message END,
        completed_at = CASE WHEN d.status = 'sending' AND d.attempts >= %(max_attempts)s
                            THEN %(now)s ELSE d.completed_at END,
        lease_until = CASE WHEN d.status = 'sending' AND d.attempts >= %(max_attempts)s
                           THEN NULL ELSE %(next_lease)s END,
        updated_at = %(now)s
    FROM due
    WHERE d.id = due.id
    RETURNING d.id, d.priority, d.notification_id, due.old_status, d.status AS new_status,
              d.channel, d.provider
), events AS (
    INSERT INTO notifications_deliveryevent
        (delivery_id, status, event, provider, provider_message_id, provider_event_id,
         error_code, error_message, detail, occurred_at, created_at)
    SELECT id, new_status,
           CASE WHEN new_status = 'failed' THEN 'failed'
                WHEN old_status = 'scheduled' THEN 'released' ELSE 'requeued' END,
           '', '', '', CASE WHEN new_status = 'failed' THEN 'worker_lost' ELSE '' END, '',
           jsonb_build_object('previous_status', old_status), %(now)s, %(now)s
    FROM moved
    WHERE old_status IN ('sending', 'scheduled')
)
SELECT id, priority, notification_id, old_status, new_status, channel, provider FROM moved
"""


# The broker lost its data: every delivery waiting for a task message is due for
# re-publishing now (a retry or deferral when its countdown ends). Locked in id order without
# waiting (a row someone holds is changing state anyway, and the lease still covers it).
_REPUBLISH_ALL_SQL = """
WITH waiting AS (
    SELECT id FROM notifications_delivery
    WHERE status IN ('pending', 'queued', 'retrying')
      AND lease_until > GREATEST(COALESCE(due_at, %(now)s), %(now)s)
    ORDER BY id
    FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE notifications_delivery AS d
SET lease_until = GREATEST(COALESCE(d.due_at, %(now)s), %(now)s)
FROM waiting
WHERE d.id = waiting.id
"""

BROKER_MARKER_KEY = "notifyhub:relay:broker-marker"
_MARKER_NAME = "broker"

def _broker_client() -> redis.Redis | None:
    url = settings.CELERY_BROKER_URL
    if urlsplit(url).scheme not in ("redis", "rediss"):
        return None
    return shared_redis(url, connect_timeout=1, timeout=2)


def broker_data_check(*, now: datetime | None = None) -> int:
    """Did the broker lose its data since the last sweep? The sweeper keeps a marker key in the
    broker and its token in PostgreSQL. Token there but key gone: the broker restarted empty
    (or was flushed) and every task message it held is lost, so every pending, queued and
    retrying delivery is made due for the sweep at once (a retry when its countdown ends).
    Returns how many were; 0 when the broker kept its data or cannot be reached now."""
    client = _broker_client()
    if client is None:
        return 0
    try:
        raw = client.get(BROKER_MARKER_KEY)
    except redis.RedisError:
        return 0  # the broker is down: nothing can be re-published now; checked next sweep
    in_broker = raw.decode() if isinstance(raw, bytes) else raw
    remembered = RelayMarker.objects.filter(name=_MARKER_NAME).values_list("token", flat=True).first()
    if in_broker is not None:
        if in_broker != remembered:  # first sweep against this database: adopt the marker
            RelayMarker.objects.update_or_create(name=_MARKER_NAME, defaults={"token": in_broker})
        return 0
    made_due = 0
    if remembered is not None:
        now = now or timezone.now()
        with connection.cursor() as cursor:
            cursor.execute(_REPUBLISH_ALL_SQL, {"now": now})
            made_due = cursor.rowcount
        logger.warning("the broker lost its data (restarted empty?): %d waiting deliveries are "
                       "re-published now", made_due)
    token = uuid.uuid4().hex
    RelayMarker.objects.update_or_create(name=_MARKER_NAME, defaults={"token": token})
    with contextlib.suppress(redis.RedisError):  # else checked again next sweep (harmless)
        client.set(BROKER_MARKER_KEY, token)
    return made_due


@dataclass
class SweepReport:
    requeued: int = 0
    recovered_from_sending: int = 0
    released_scheduled: int = 0
    gave_up: int = 0
    jobs_republished: int = 0
    broker_data_lost: int = 0  # deliveries made due because the broker lost its messages
    # What the caller must publish (after commit): the re-published deliveries' dispatch
    # tasks and the client webhooks of those it gave up on.
    publications: list[Publication] = field(default_factory=list)


def relay_sweep(*, limit: int | None = None) -> SweepReport:
    """One sweep. A delivery it gives up on (`failed` / `worker_lost`) is reported like any
    other failure: its `delivery.failed` client webhook is written to the outbox in the same
    transaction, `notifyhub_deliveries_total{status="failed"}` counts it, and its
    notification's status is refreshed (with `notification.completed` when that made it
    final). Publishes nothing: the caller publishes `report.publications`."""
    now = timezone.now()
    next_lease = now + timedelta(seconds=settings.RELAY_REQUEUE_AFTER_SECONDS)
    lost = broker_data_check(now=now)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                _SWEEP_SQL,
                {"now": now, "next_lease": next_lease,
                 "limit": limit or settings.RELAY_SWEEP_BATCH,
                 "max_attempts": settings.DELIVERY_MAX_ATTEMPTS},
            )
            rows = cursor.fetchall()
        gave_up = [r for r in rows if r[4] == "failed"]
        publications = webhook_events_record(items=[
            DeliveryEventItem(delivery_id=str(r[0]), event_type=STATUS_EVENTS["failed"],
                              occurred_at=now, status="failed")
            for r in gave_up
        ], now=now)
    requeue = [r for r in rows if r[4] != "failed"]
    report = SweepReport(requeued=len(requeue), gave_up=len(gave_up), broker_data_lost=lost,
                         publications=publications)
    report.recovered_from_sending = sum(1 for r in requeue if r[3] == "sending")
    report.released_scheduled = sum(1 for r in requeue if r[3] == "scheduled")
    if rows:
        logger.info("relay sweep: requeued %d (recovered %d from crashed sends, released %d "
                    "scheduled), gave up on %d", report.requeued, report.recovered_from_sending,
                    report.released_scheduled, report.gave_up)
        notifications_refresh_status(notification_ids={r[2] for r in rows})
        if gave_up:
            instrumentation.observe_failed([(r[5], r[6]) for r in gave_up])
            report.publications += webhook_completions_record(
                notification_ids={r[2] for r in gave_up})
        report.publications += deliveries_publications(items=[(str(r[0]), r[1]) for r in requeue])
    # Large sends whose expansion stopped (expand task lost, worker died): see fanout.py.
    report.jobs_republished = accept_jobs_sweep()
    return report
