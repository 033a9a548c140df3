"""The worker side: claim → render → send through the provider → record → retry or finish.

A delivery is claimed with one atomic UPDATE that only matches rows still claimable, so two
workers (or a redelivered broker message) never send the same delivery. Each outcome is recorded
right after its provider call returns, before the task is acknowledged (acks_late): a worker
killed mid-batch leaves its unrecorded deliveries `sending`, and the relay sweeper hands them out
again when their lease ends.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.templates.rendering import RenderError, render_part

from .channels.base import OutboundMessage, Outcome, SendResult
from .channels.registry import providers_for
from .enqueue import deliveries_enqueue
from .models import Delivery, DeliveryStatus
from .status import notifications_refresh_status

logger = logging.getLogger(__name__)

_CLAIM_SQL = """
WITH claimed AS (
    UPDATE notifications_delivery
    SET status = 'sending', attempts = attempts + 1, lease_until = %(lease_until)s,
        updated_at = %(now)s
    WHERE id = ANY(%(ids)s::uuid[])
      AND status IN ('pending', 'queued', 'retrying')
      AND (due_at IS NULL OR due_at <= %(now)s)
    RETURNING id, attempts
), events AS (
    INSERT INTO notifications_deliveryevent
        (delivery_id, status, event, provider, provider_message_id, provider_event_id,
         error_code, error_message, detail, occurred_at, created_at)
    SELECT id, 'sending', 'claimed', '', '', '', '', '',
           jsonb_build_object('attempt', attempts), %(now)s, %(now)s
    FROM claimed
)
SELECT id, attempts FROM claimed
"""

_RECORD_SQL = """
WITH updated AS (
    UPDATE notifications_delivery
    SET status = CASE WHEN status = 'sending' AND attempts = %(attempt)s
                      THEN %(status)s ELSE status END,
        provider = %(provider)s,
        provider_message_id = COALESCE(NULLIF(%(message_id)s, ''), provider_message_id),
        error_code = %(error_code)s,
        error_message = %(error_message)s,
        due_at = %(due_at)s,
        lease_until = CASE WHEN status = 'sending' AND attempts = %(attempt)s
                           THEN %(lease_until)s ELSE lease_until END,
        sent_at = CASE WHEN %(is_sent)s THEN COALESCE(sent_at, %(now)s) ELSE sent_at END,
        completed_at = CASE WHEN %(is_final)s THEN %(now)s ELSE completed_at END,
        updated_at = %(now)s
    WHERE id = %(id)s
    RETURNING id
)
INSERT INTO notifications_deliveryevent
    (delivery_id, status, event, provider, provider_message_id, provider_event_id,
     error_code, error_message, detail, occurred_at, created_at)
SELECT id, %(status)s, %(event)s, %(provider)s, %(message_id)s, '', %(error_code)s,
       %(error_message)s, %(detail)s::jsonb, %(now)s, %(now)s
FROM updated
"""


@dataclass
class DispatchReport:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    notification_ids: set[str] = field(default_factory=set)


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    """1 s, 2 s, 4 s … capped, ±jitter; never shorter than what the provider asked for."""
    base = min(settings.RETRY_MAX_SECONDS, settings.RETRY_INITIAL_SECONDS * 2 ** max(attempt - 1, 0))
    jitter = settings.RETRY_JITTER
    delay = base * random.uniform(1 - jitter, 1 + jitter)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return float(min(delay, settings.RETRY_MAX_SECONDS))


def deliveries_claim(*, delivery_ids: Sequence[str]) -> dict[str, int]:
    """Atomically takes the still-claimable deliveries among these: id → attempt number."""
    now = timezone.now()
    lease_until = now + timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL,
            {"ids": [str(i) for i in delivery_ids], "now": now, "lease_until": lease_until},
        )
        return {str(row[0]): int(row[1]) for row in cursor.fetchall()}


def _render(delivery: Delivery) -> OutboundMessage:
    notification = delivery.notification
    version = notification.template_version
    recipient = delivery.recipient
    context: dict[str, Any] = {
        **notification.variables,
        "recipient": {
            "id": recipient.external_id,
            "locale": recipient.locale,
            "timezone": recipient.timezone,
            "attributes": recipient.attributes,
        },
    }
    vid = str(version.id)
    return OutboundMessage(
        delivery_id=str(delivery.id),
        notification_id=str(notification.id),
        client_id=str(delivery.client_id),
        channel=delivery.channel,
        to=delivery.address,
        subject=render_part(vid, "subject", version.subject, context, html=False).strip(),
        text=render_part(vid, "text", version.text_body, context, html=False),
        html=render_part(vid, "html", version.html_body, context, html=True),
        from_address=delivery.client.default_from_email,
        category=notification.category,
        metadata=notification.metadata,
    )


def delivery_record_outcome(
    *, delivery_id: str, attempt: int, result: SendResult, now: datetime | None = None
) -> tuple[str, datetime | None]:
    """Writes the outcome of one provider call and its event in one statement.

    Returns the new status and, when a retry is due, its time."""
    now = now or timezone.now()
    due_at: datetime | None = None
    lease_until: datetime | None = None
    if result.outcome == Outcome.SENT:
        status, event = DeliveryStatus.SENT, "sent"
    elif result.outcome == Outcome.RETRYABLE and attempt < settings.DELIVERY_MAX_ATTEMPTS:
        status, event = DeliveryStatus.RETRYING, "retry_scheduled"
        due_at = now + timedelta(seconds=backoff_seconds(attempt, result.retry_after))
        # If the countdown message is lost, the sweeper takes over a little after it was due.
        lease_until = due_at + timedelta(seconds=settings.RELAY_REQUEUE_AFTER_SECONDS)
    else:
        status, event = DeliveryStatus.FAILED, "failed"
    detail = {"attempt": attempt}
    if due_at is not None:
        detail["next_attempt_at"] = due_at.isoformat()  # type: ignore[assignment]
    if result.outcome == Outcome.RETRYABLE and status == DeliveryStatus.FAILED:
        detail["gave_up_after_attempts"] = attempt
    with connection.cursor() as cursor:
        cursor.execute(
            _RECORD_SQL,
            {
                "id": delivery_id,
                "attempt": attempt,
                "status": status.value,
                "event": event,
                "provider": result.provider,
                "message_id": result.provider_message_id,
                "error_code": result.error_code,
                "error_message": result.error_message[:2000],
                "due_at": due_at,
                "lease_until": lease_until,
                "is_sent": status == DeliveryStatus.SENT,
                "is_final": status == DeliveryStatus.FAILED,
                "detail": _json(detail),
                "now": now,
            },
        )
    return status.value, due_at


def _json(value: dict[str, Any]) -> str:
    import json

    return json.dumps(value)


def deliveries_dispatch(*, delivery_ids: Sequence[str]) -> DispatchReport:
    """Claims and sends these deliveries; safe to call twice with the same ids."""
    report = DispatchReport()
    attempts = deliveries_claim(delivery_ids=delivery_ids)
    if not attempts:
        return report
    report.claimed = len(attempts)
    deliveries = list(
        Delivery.objects.filter(id__in=list(attempts)).select_related(
            "recipient", "client", "notification__template_version"
        )
    )
    retries: list[tuple[str, str, float]] = []

    def finish(delivery: Delivery, result: SendResult) -> None:
        status, due_at = delivery_record_outcome(
            delivery_id=str(delivery.id), attempt=attempts[str(delivery.id)], result=result
        )
        report.notification_ids.add(str(delivery.notification_id))
        if status == DeliveryStatus.SENT:
            report.sent += 1
        elif status == DeliveryStatus.RETRYING and due_at is not None:
            report.retrying += 1
            retries.append((str(delivery.id), delivery.priority,
                            max((due_at - timezone.now()).total_seconds(), 0.0)))
        else:
            report.failed += 1

    work: list[tuple[Delivery, OutboundMessage, Any]] = []
    for delivery in deliveries:
        providers = providers_for(delivery.channel)
        if not providers:
            finish(delivery, SendResult.permanent("", "channel_not_supported",
                                                  f"No provider for {delivery.channel}."))
            continue
        try:
            message = _render(delivery)
        except RenderError as exc:
            finish(delivery, SendResult.permanent("", "render_error", str(exc)))
            continue
        work.append((delivery, message, providers[0]))

    if len(work) == 1:
        delivery, message, provider = work[0]
        finish(delivery, provider.send(message))
    elif work:
        workers = min(settings.DISPATCH_CONCURRENCY, len(work))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="send") as pool:
            futures: dict[Future[SendResult], Delivery] = {
                pool.submit(provider.send, message): delivery for delivery, message, provider in work
            }
            # Recorded in this thread as each call returns: one DB connection, smallest window.
            for future in as_completed(futures):
                finish(futures[future], future.result())

    notifications_refresh_status(notification_ids=report.notification_ids)
    for delivery_id, priority, countdown in retries:
        deliveries_enqueue(items=[(delivery_id, priority)], countdown=countdown)
    return report
