"""The webhook relay sweeper (beat, every WEBHOOKS_SWEEP_INTERVAL_SECONDS), as
apps/notifications/relay.py is for deliveries: the queue is a fast path, PostgreSQL the truth.

It publishes messages whose lease ended: pending ones whose task message was lost or whose
long retry wait is over (those are never published with a countdown), and `sending` ones whose
worker died mid-attempt (back to pending; failed once the attempts are used up). It also fails
what is left of disabled endpoints, disables endpoints that have failed continuously for
WEBHOOKS_DISABLE_AFTER_FAILING_SECONDS, and forgets rotated secrets whose overlap ended.

Backed-off endpoints (delivery.py): it publishes the probe of each endpoint whose
`next_probe_at` has come (steps too long for a countdown, or a probe whose worker died), and
never touches their parked messages (`lease_until` NULL, outside its scan): a dead endpoint
costs it one index lookup per sweep, whatever its queue holds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from apps.core.tasks import Publication

from ..models import WebhookEndpoint, WebhookMessage, WebhookMessageStatus
from .delivery import retry_delays, webhook_endpoint_recover
from .publish import webhook_endpoint_probe_publication, webhook_messages_publications
from .services import webhook_endpoint_disable

logger = logging.getLogger(__name__)

_SWEEP_SQL = """
WITH due AS (
    SELECT id FROM webhooks_webhookmessage
    WHERE status IN ('pending', 'sending') AND lease_until <= %(now)s
    ORDER BY lease_until
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), decided AS (
    SELECT m.id,
        CASE WHEN e.disabled_at IS NOT NULL OR e.deleted_at IS NOT NULL THEN 'endpoint_off'
             WHEN m.status = 'sending' AND m.attempts >= %(max_attempts)s THEN 'gave_up'
             WHEN m.status = 'sending' THEN 'recovered'
             ELSE 'due' END AS verdict
    FROM webhooks_webhookmessage AS m
    JOIN due ON due.id = m.id
    JOIN webhooks_webhookendpoint AS e ON e.id = m.endpoint_id
)
UPDATE webhooks_webhookmessage AS m
SET status = CASE WHEN d.verdict IN ('endpoint_off', 'gave_up') THEN 'failed' ELSE 'pending' END,
    last_error = CASE
        WHEN d.verdict = 'endpoint_off' THEN 'The endpoint is disabled.'
        WHEN d.verdict = 'gave_up' THEN 'The worker sending it stopped on every attempt.'
        WHEN d.verdict = 'recovered' THEN 'The worker sending it stopped.'
        ELSE m.last_error END,
    next_attempt_at = CASE WHEN d.verdict = 'recovered' THEN %(now)s
                           WHEN d.verdict = 'due' THEN m.next_attempt_at ELSE NULL END,
    lease_until = CASE WHEN d.verdict IN ('endpoint_off', 'gave_up') THEN NULL
                       ELSE %(next_lease)s END,
    updated_at = %(now)s
FROM decided AS d
WHERE m.id = d.id
RETURNING m.id, m.endpoint_id, d.verdict
"""


@dataclass
class WebhookSweepReport:
    published: int = 0  # messages handed to the caller to publish
    recovered: int = 0
    failed: int = 0
    endpoints_disabled: int = 0
    probes: int = 0  # probes of backed-off endpoints published
    unparked: int = 0  # messages left parked behind an endpoint no longer backed off
    # What the caller must publish: the messages' deliver tasks and the probes.
    publications: list[Publication] = field(default_factory=list)


def webhook_messages_relay(*, limit: int | None = None) -> WebhookSweepReport:
    now = timezone.now()
    report = WebhookSweepReport()
    next_lease = now + timedelta(seconds=settings.WEBHOOKS_REQUEUE_AFTER_SECONDS)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_SWEEP_SQL, {"now": now, "next_lease": next_lease,
                                    "limit": limit or settings.WEBHOOKS_SWEEP_BATCH,
                                    "max_attempts": len(retry_delays())})
        rows = cursor.fetchall()
    publish = [(str(r[0]), str(r[1])) for r in rows if r[2] in ("due", "recovered")]
    report.recovered = sum(1 for r in rows if r[2] == "recovered")
    report.failed = len(rows) - len(publish)
    report.published = len(publish)
    report.publications += webhook_messages_publications(items=publish)

    limit_seconds = settings.WEBHOOKS_DISABLE_AFTER_FAILING_SECONDS
    failing = WebhookEndpoint.objects.filter(
        disabled_at__isnull=True, deleted_at__isnull=True,
        failing_since__lte=now - timedelta(seconds=limit_seconds),
    ).values_list("id", "failing_since")
    for endpoint_id, failing_since in failing:
        if webhook_endpoint_disable(
            endpoint_id=endpoint_id, now=now,
            reason=f"Every attempt failed for {limit_seconds / 86400:g} days "
                   f"(since {failing_since:%Y-%m-%d %H:%M} UTC).",
        ):
            report.endpoints_disabled += 1

    # Probes that are due (long steps, or a probe whose worker died: its slot lease ended).
    due_probes = WebhookEndpoint.objects.filter(
        next_probe_at__lte=now, disabled_at__isnull=True, deleted_at__isnull=True,
    ).order_by("next_probe_at").values_list("id", flat=True)[:settings.WEBHOOKS_SWEEP_BATCH]
    for endpoint_id in due_probes:
        report.publications.append(webhook_endpoint_probe_publication(endpoint_id=str(endpoint_id)))
        report.probes += 1
    # A net for a race (a success clearing the backoff while another worker parked): parked
    # messages of an endpoint that is no longer backed off get their lease back.
    stranded = WebhookEndpoint.objects.filter(
        next_probe_at__isnull=True, disabled_at__isnull=True, deleted_at__isnull=True,
    ).filter(Exists(WebhookMessage.objects.filter(
        endpoint_id=OuterRef("id"), status=WebhookMessageStatus.PENDING, lease_until__isnull=True,
    ))).values_list("id", flat=True)
    for endpoint_id in stranded:
        report.unparked += webhook_endpoint_recover(endpoint_id=str(endpoint_id), now=now)

    WebhookEndpoint.objects.filter(previous_secret_expires_at__lte=now).update(
        previous_secret="", previous_secret_expires_at=None)
    if rows or report.endpoints_disabled or report.unparked:
        logger.info("webhook relay: publishing %d (recovered %d from crashed attempts), failed %d, "
                    "disabled %d endpoints, %d probes, %d unparked", report.published,
                    report.recovered, report.failed, report.endpoints_disabled, report.probes,
                    report.unparked)
    return report
