"""Sending webhook messages: claim → sign → POST (pinned, checked address) → log the attempt →
succeed, retry on the schedule, or fail; disable an endpoint that answers 410 or has failed
for WEBHOOKS_DISABLE_AFTER_FAILING_SECONDS (5 days).

A message is claimed with one UPDATE that matches it only while it is pending, due and its
endpoint enabled, so a duplicate task message or a second worker sends nothing. Retries are
deferred by their due time: a short wait as a task countdown, a long one (beyond
WEBHOOKS_MAX_COUNTDOWN_SECONDS, under the broker's visibility timeout) left to the relay
sweeper, which publishes the message when it is due. Nothing sleeps.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ..models import WebhookAttempt, WebhookEndpoint, WebhookMessage, WebhookMessageStatus
from . import transport
from .publish import webhook_messages_enqueue
from .services import webhook_endpoint_disable
from .signing import signed_headers

logger = logging.getLogger(__name__)

# A countdown message may arrive a little before its due time; claim it anyway.
DUE_TOLERANCE = timedelta(seconds=1)

_CLAIM_SQL = """
UPDATE webhooks_webhookmessage AS m
SET status = 'sending', attempts = m.attempts + 1, lease_until = %(lease_until)s,
    updated_at = %(now)s
FROM webhooks_webhookendpoint AS e
WHERE m.id = %(id)s AND m.status = 'pending'
  AND (m.next_attempt_at IS NULL OR m.next_attempt_at <= %(due_before)s)
  AND e.id = m.endpoint_id AND e.disabled_at IS NULL AND e.deleted_at IS NULL
RETURNING m.attempts
"""

_FAILING_SQL = """
UPDATE webhooks_webhookendpoint
SET failing_since = COALESCE(failing_since, %(now)s)
WHERE id = %(id)s
RETURNING failing_since
"""


def retry_delays() -> list[float]:
    """Seconds before each attempt: the first is immediate, then 5 s, 5 min, 30 min, 2 h, 5 h,
    10 h, 10 h (WEBHOOKS_RETRY_SCHEDULE_SECONDS)."""
    return [float(s) for s in settings.WEBHOOKS_RETRY_SCHEDULE_SECONDS]


def next_attempt_at(*, attempt: int, now: datetime) -> datetime | None:
    """When the attempt after `attempt` (1-based, just failed at `now`) is due; None when it
    was the last one."""
    delays = retry_delays()
    if attempt >= len(delays):
        return None
    return now + timedelta(seconds=delays[attempt])


def message_body(message: WebhookMessage) -> str:
    return json.dumps(message.payload, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def message_signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The current secret, and during a rotation's overlap the previous one too."""
    secrets = [endpoint.secret]
    if (endpoint.previous_secret and endpoint.previous_secret_expires_at
            and endpoint.previous_secret_expires_at > now):
        secrets.append(endpoint.previous_secret)
    return secrets


def webhook_message_send(*, message: WebhookMessage, endpoint: WebhookEndpoint,
                         now: datetime | None = None) -> transport.HttpResult:
    """One signed POST of this message to its endpoint (no bookkeeping)."""
    now = now or timezone.now()
    body = message_body(message)
    headers = signed_headers(secrets=message_signing_secrets(endpoint, now), msg_id=str(message.id),
                             timestamp=int(now.timestamp()), body=body)
    return transport.post(endpoint.url, body=body.encode(), headers=headers,
                          timeout=settings.WEBHOOKS_TIMEOUT_SECONDS)


def webhook_message_claim(*, message_id: str, now: datetime | None = None) -> int | None:
    """Takes a pending, due message of an enabled endpoint: its attempt number, or None."""
    now = now or timezone.now()
    lease_until = now + timedelta(seconds=settings.WEBHOOKS_TIMEOUT_SECONDS + 30)
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, {"id": message_id, "now": now, "lease_until": lease_until,
                                    "due_before": now + DUE_TOLERANCE})
        row = cursor.fetchone()
    return int(row[0]) if row else None


@dataclass(frozen=True)
class AttemptOutcome:
    status: str  # the message's new status
    next_attempt_at: datetime | None = None
    countdown: float | None = None  # publish again after this many seconds (None: sweeper)
    endpoint_disabled: bool = False


@transaction.atomic
def webhook_attempt_record(
    *, message: WebhookMessage, endpoint: WebhookEndpoint, attempt: int,
    result: transport.HttpResult, now: datetime | None = None,
) -> AttemptOutcome:
    """Logs the attempt and moves the message on: succeeded; pending with its next due time;
    or failed (schedule exhausted, 410 Gone). Tracks the endpoint's failure streak and
    disables it on 410 or after failing continuously for the configured time."""
    now = now or timezone.now()
    WebhookAttempt.objects.create(
        message=message, endpoint=endpoint, attempt=attempt, status_code=result.status_code,
        duration_ms=result.duration_ms, succeeded=result.succeeded, error_code=result.error_code,
        error=result.error, response_body=result.body,
    )
    this_attempt = WebhookMessage.objects.filter(id=message.id, status=WebhookMessageStatus.SENDING,
                                                 attempts=attempt)
    common = {"last_status_code": result.status_code, "updated_at": now}
    if result.succeeded:
        this_attempt.update(status=WebhookMessageStatus.SUCCEEDED, succeeded_at=now,
                            next_attempt_at=None, lease_until=None, last_error="", **common)
        WebhookEndpoint.objects.filter(id=endpoint.id, failing_since__isnull=False).update(
            failing_since=None, updated_at=now)
        return AttemptOutcome(status=WebhookMessageStatus.SUCCEEDED)

    error = result.error or result.error_code
    if result.status_code == 410:
        this_attempt.update(status=WebhookMessageStatus.FAILED, next_attempt_at=None,
                            lease_until=None, last_error=error, **common)
        webhook_endpoint_disable(endpoint_id=endpoint.id, now=now,
                                 reason="The endpoint answered 410 Gone.")
        return AttemptOutcome(status=WebhookMessageStatus.FAILED, endpoint_disabled=True)

    due = next_attempt_at(attempt=attempt, now=now)
    if due is None:
        this_attempt.update(status=WebhookMessageStatus.FAILED, next_attempt_at=None,
                            lease_until=None, last_error=error, **common)
        outcome = AttemptOutcome(status=WebhookMessageStatus.FAILED)
    else:
        countdown = (due - now).total_seconds()
        by_countdown = countdown <= settings.WEBHOOKS_MAX_COUNTDOWN_SECONDS
        # Published with a countdown: the sweeper steps in only if that message is lost.
        # Beyond the broker's comfort: the sweeper publishes it when it is due.
        lease_until = (due + timedelta(seconds=settings.WEBHOOKS_REQUEUE_AFTER_SECONDS)
                       if by_countdown else due)
        this_attempt.update(status=WebhookMessageStatus.PENDING, next_attempt_at=due,
                            lease_until=lease_until, last_error=error, **common)
        outcome = AttemptOutcome(status=WebhookMessageStatus.PENDING, next_attempt_at=due,
                                 countdown=countdown if by_countdown else None)

    # The streak starts at the first failure after a success (one statement, exact under
    # concurrent workers).
    with connection.cursor() as cursor:
        cursor.execute(_FAILING_SQL, {"id": endpoint.id, "now": now})
        row = cursor.fetchone()
    failing_since: datetime = row[0] if row else now
    limit = timedelta(seconds=settings.WEBHOOKS_DISABLE_AFTER_FAILING_SECONDS)
    if now - failing_since >= limit:
        days = limit.total_seconds() / 86400
        webhook_endpoint_disable(
            endpoint_id=endpoint.id, now=now,
            reason=f"Every attempt failed for {days:g} days (since {failing_since:%Y-%m-%d %H:%M} UTC).")
        return AttemptOutcome(status=WebhookMessageStatus.FAILED, endpoint_disabled=True)
    return outcome


@dataclass
class DeliverReport:
    claimed: int = 0
    succeeded: int = 0
    retrying: int = 0
    failed: int = 0


def webhook_messages_deliver(*, message_ids: Sequence[str]) -> DeliverReport:
    """Sends these messages one by one (each claimed just before its attempt); safe to call
    twice with the same ids."""
    report = DeliverReport()
    messages = list(
        WebhookMessage.objects.filter(id__in=list(message_ids), status=WebhookMessageStatus.PENDING)
        .select_related("endpoint").order_by("created_at", "id")
    )
    later: dict[float, list[tuple[str, str]]] = defaultdict(list)
    for message in messages:
        attempt = webhook_message_claim(message_id=str(message.id))
        if attempt is None:
            continue
        report.claimed += 1
        endpoint = message.endpoint
        result = webhook_message_send(message=message, endpoint=endpoint)
        outcome = webhook_attempt_record(message=message, endpoint=endpoint, attempt=attempt,
                                         result=result)
        if outcome.status == WebhookMessageStatus.SUCCEEDED:
            report.succeeded += 1
        elif outcome.status == WebhookMessageStatus.PENDING:
            report.retrying += 1
            if outcome.countdown is not None:
                later[round(outcome.countdown, 1)].append((str(message.id), str(endpoint.id)))
        else:
            report.failed += 1
    for countdown, items in later.items():
        webhook_messages_enqueue(items=items, countdown=countdown)
    return report
