"""Sending webhook messages: claim → sign → POST (pinned, checked address) → log the attempt →
succeed, retry on the schedule, or fail; disable an endpoint that answers 410 or has failed
for WEBHOOKS_DISABLE_AFTER_FAILING_SECONDS (5 days).

A message is claimed with one UPDATE that matches it only while it is pending, due and its
endpoint enabled and not backed off, so a duplicate task message or a second worker sends
nothing. Retries are deferred by their due time: a short wait as a task countdown, a long one
(beyond WEBHOOKS_MAX_COUNTDOWN_SECONDS, under the broker's visibility timeout) left to the relay
sweeper, which publishes the message when it is due. Nothing sleeps.

Endpoint backoff (as Svix does). An attempt that gets no answer (refused, reset, timeout, DNS,
TLS, a refused address) or a 429/5xx says the *endpoint* is failing, not the message: the
endpoint gets `next_probe_at` (the next step of WEBHOOKS_ENDPOINT_BACKOFF_SECONDS, by default
the retry schedule's waits: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, then 10 h per step) and its
queued messages are parked (pending, `lease_until` NULL: no task, no sweep touches them). At
`next_probe_at` one probe, the endpoint's oldest due message, is sent: a success clears the
backoff and drains the queue, oldest first, `WEBHOOKS_DRAIN_BATCH` messages per task; a failure
moves to the next step. A dead endpoint costs one request and a few statements per step,
whatever its queue holds. Any other non-2xx (a 4xx, a redirect) is the message's own problem:
that message alone waits for its next attempt on the retry schedule.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from ..models import WebhookAttempt, WebhookEndpoint, WebhookMessage, WebhookMessageStatus
from . import transport
from .publish import (
    webhook_endpoint_drain_enqueue,
    webhook_endpoint_probe_enqueue,
    webhook_messages_enqueue,
)
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
  AND (%(probe)s OR e.next_probe_at IS NULL)
RETURNING m.attempts
"""

_FAILING_SQL = """
UPDATE webhooks_webhookendpoint
SET failing_since = COALESCE(failing_since, %(now)s)
WHERE id = %(id)s
RETURNING failing_since
"""

# One backoff step: the streak, the step count and the next probe's time, in one statement.
# Taken by a failed probe, or by the failure that starts the backoff; a second worker whose
# attempt was already in flight when another one backed the endpoint off takes no step.
_BACKOFF_SQL = """
UPDATE webhooks_webhookendpoint
SET failing_since = COALESCE(failing_since, %(now)s),
    probe_failures = CASE WHEN %(probe)s OR next_probe_at IS NULL
                          THEN LEAST(probe_failures + 1, 32767) ELSE probe_failures END,
    next_probe_at = CASE WHEN %(probe)s OR next_probe_at IS NULL
        THEN %(now)s + make_interval(secs => (%(delays)s::float8[])[
            LEAST(probe_failures + 1, cardinality(%(delays)s::float8[]))])
        ELSE next_probe_at END,
    updated_at = %(now)s
WHERE id = %(id)s
RETURNING failing_since, next_probe_at
"""

# Parks these pending messages while their endpoint is backed off (checked in the statement,
# so a recovery that committed first is seen and nothing is parked).
_PARK_SQL = """
UPDATE webhooks_webhookmessage AS m
SET lease_until = NULL, updated_at = %(now)s
FROM webhooks_webhookendpoint AS e
WHERE m.id = ANY(%(ids)s::uuid[]) AND m.status = 'pending' AND m.lease_until IS NOT NULL
  AND e.id = m.endpoint_id AND e.next_probe_at IS NOT NULL
"""

# The probe's turn: taken by one UPDATE while the endpoint's probe is due; the lease covers a
# worker that dies mid-probe (the sweeper sees the endpoint due again when it ends).
_PROBE_SLOT_SQL = """
UPDATE webhooks_webhookendpoint
SET next_probe_at = %(lease_until)s
WHERE id = %(id)s AND next_probe_at <= %(due_before)s
  AND disabled_at IS NULL AND deleted_at IS NULL
RETURNING id
"""

# After a recovery: parked messages get a lease again (the sweeper's net) — at their own due
# time when that is later (a 4xx retry waiting on its schedule).
_UNPARK_SQL = """
UPDATE webhooks_webhookmessage
SET lease_until = CASE WHEN next_attempt_at > %(now)s THEN next_attempt_at
                       ELSE %(lease_until)s END,
    updated_at = %(now)s
WHERE endpoint_id = %(id)s AND status = 'pending' AND lease_until IS NULL
"""


def endpoint_backoff_delays() -> list[float]:
    """Seconds between probes of a failing endpoint, step by step (the last repeats):
    WEBHOOKS_ENDPOINT_BACKOFF_SECONDS, or the retry schedule's waits (5 s … 10 h)."""
    delays = getattr(settings, "WEBHOOKS_ENDPOINT_BACKOFF_SECONDS", None) or retry_delays()[1:]
    return [float(s) for s in delays] or [5.0]


def endpoint_is_down(result: transport.HttpResult) -> bool:
    """Whether this failed attempt says the endpoint, not the message, is failing: no HTTP
    answer at all, or 429 / 5xx."""
    if result.succeeded:
        return False
    return result.status_code is None or result.status_code == 429 or result.status_code >= 500


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
    if message.request_id:  # the send's request id, for the client's own logs
        headers["X-Request-Id"] = message.request_id
    return transport.post(endpoint.url, body=body.encode(), headers=headers,
                          timeout=settings.WEBHOOKS_TIMEOUT_SECONDS)


def _attempt_lease(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.WEBHOOKS_TIMEOUT_SECONDS + 30)


def webhook_message_claim(*, message_id: str, now: datetime | None = None,
                          probe: bool = False) -> int | None:
    """Takes a pending, due message of an enabled endpoint that is not backed off (or, for
    `probe`, whose probe slot the caller holds): its attempt number, or None."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, {"id": message_id, "now": now, "lease_until": _attempt_lease(now),
                                    "due_before": now + DUE_TOLERANCE, "probe": probe})
        row = cursor.fetchone()
    return int(row[0]) if row else None


def webhook_messages_park(*, message_ids: Sequence[str], now: datetime | None = None) -> int:
    """Parks those of these pending messages whose endpoint is backed off. One statement."""
    if not message_ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(_PARK_SQL, {"ids": list(message_ids), "now": now or timezone.now()})
        return cursor.rowcount


@dataclass(frozen=True)
class AttemptOutcome:
    status: str  # the message's new status
    next_attempt_at: datetime | None = None
    countdown: float | None = None  # publish again after this many seconds (None: sweeper)
    endpoint_disabled: bool = False
    # The endpoint is backed off until this time (its other messages wait for the probe).
    next_probe_at: datetime | None = None
    # The endpoint was backed off and this success ended it: its queue must be drained.
    recovered: bool = False

    @property
    def probe_countdown(self) -> float | None:
        """Seconds until the probe, when short enough for a task countdown (else: sweeper)."""
        if self.next_probe_at is None:
            return None
        seconds = max((self.next_probe_at - timezone.now()).total_seconds(), 0.0)
        return seconds if seconds <= settings.WEBHOOKS_MAX_COUNTDOWN_SECONDS else None


@transaction.atomic
def webhook_attempt_record(
    *, message: WebhookMessage, endpoint: WebhookEndpoint, attempt: int,
    result: transport.HttpResult, now: datetime | None = None, probe: bool = False,
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
        cleared = WebhookEndpoint.objects.filter(
            Q(failing_since__isnull=False) | Q(next_probe_at__isnull=False), id=endpoint.id,
        ).update(failing_since=None, next_probe_at=None, probe_failures=0, updated_at=now)
        recovered = False
        if cleared:  # give parked messages their lease back (none parked: an index probe)
            with connection.cursor() as cursor:
                cursor.execute(_UNPARK_SQL, {"id": endpoint.id, "now": now,
                                             "lease_until": now + timedelta(
                                                 seconds=settings.WEBHOOKS_REQUEUE_AFTER_SECONDS)})
                recovered = cursor.rowcount > 0
        return AttemptOutcome(status=WebhookMessageStatus.SUCCEEDED, recovered=recovered)

    error = result.error or result.error_code
    if result.status_code == 410:
        this_attempt.update(status=WebhookMessageStatus.FAILED, next_attempt_at=None,
                            lease_until=None, last_error=error, **common)
        webhook_endpoint_disable(endpoint_id=endpoint.id, now=now,
                                 reason="The endpoint answered 410 Gone.")
        return AttemptOutcome(status=WebhookMessageStatus.FAILED, endpoint_disabled=True)

    due = next_attempt_at(attempt=attempt, now=now)
    if endpoint_is_down(result):
        # The endpoint is failing: back it off as a whole. This message waits, parked, for
        # its own next attempt time and for the endpoint's probe.
        with connection.cursor() as cursor:
            cursor.execute(_BACKOFF_SQL, {"id": endpoint.id, "now": now, "probe": probe,
                                          "delays": endpoint_backoff_delays()})
            row = cursor.fetchone()
        failing_since, probe_at = (row[0], row[1]) if row else (now, now)
        if due is None:
            this_attempt.update(status=WebhookMessageStatus.FAILED, next_attempt_at=None,
                                lease_until=None, last_error=error, **common)
            outcome = AttemptOutcome(status=WebhookMessageStatus.FAILED, next_probe_at=probe_at)
        else:
            this_attempt.update(status=WebhookMessageStatus.PENDING, next_attempt_at=max(due, probe_at),
                                lease_until=None, last_error=error, **common)
            outcome = AttemptOutcome(status=WebhookMessageStatus.PENDING,
                                     next_attempt_at=max(due, probe_at), next_probe_at=probe_at)
        return _disable_if_failing_too_long(endpoint, failing_since, now) or outcome

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
    streak_start: datetime = row[0] if row else now
    return _disable_if_failing_too_long(endpoint, streak_start, now) or outcome


def _disable_if_failing_too_long(endpoint: WebhookEndpoint, failing_since: datetime,
                                 now: datetime) -> AttemptOutcome | None:
    limit = timedelta(seconds=settings.WEBHOOKS_DISABLE_AFTER_FAILING_SECONDS)
    if now - failing_since < limit:
        return None
    days = limit.total_seconds() / 86400
    webhook_endpoint_disable(
        endpoint_id=endpoint.id, now=now,
        reason=f"Every attempt failed for {days:g} days (since {failing_since:%Y-%m-%d %H:%M} UTC).")
    return AttemptOutcome(status=WebhookMessageStatus.FAILED, endpoint_disabled=True)


@dataclass
class DeliverReport:
    claimed: int = 0
    succeeded: int = 0
    retrying: int = 0
    failed: int = 0
    parked: int = 0  # waiting for their endpoint's probe (no request made)


def webhook_messages_deliver(*, message_ids: Sequence[str]) -> DeliverReport:
    """Sends these messages one by one, oldest first (each claimed just before its attempt);
    safe to call twice with the same ids. Once an endpoint is found failing (here or by
    another worker), its remaining messages are parked, not tried: the endpoint's probe comes
    first."""
    report = DeliverReport()
    messages = list(
        WebhookMessage.objects.filter(id__in=list(message_ids), status=WebhookMessageStatus.PENDING)
        .select_related("endpoint").order_by("created_at", "id")
    )
    later: dict[float, list[tuple[str, str]]] = defaultdict(list)
    backed_off: dict[str, float | None] = {}  # endpoint id → probe countdown
    recovered: set[str] = set()
    to_park: list[str] = []
    for message in messages:
        endpoint = message.endpoint
        if str(endpoint.id) in backed_off or endpoint.next_probe_at is not None:
            to_park.append(str(message.id))  # no claim: the endpoint's probe comes first
            continue
        attempt = webhook_message_claim(message_id=str(message.id))
        if attempt is None:
            to_park.append(str(message.id))  # parked only if its endpoint is backed off
            continue
        report.claimed += 1
        outcome = _send_and_record(message, endpoint, attempt, report, later)
        if outcome.next_probe_at is not None and not outcome.endpoint_disabled:
            backed_off[str(endpoint.id)] = outcome.probe_countdown
        if outcome.recovered:
            recovered.add(str(endpoint.id))
    report.parked = webhook_messages_park(message_ids=to_park)
    for countdown, items in later.items():
        webhook_messages_enqueue(items=items, countdown=countdown)
    for endpoint_id, probe_in in backed_off.items():
        if probe_in is not None:
            webhook_endpoint_probe_enqueue(endpoint_id=endpoint_id, countdown=probe_in)
    for endpoint_id in recovered:
        webhook_endpoint_drain_enqueue(endpoint_id=endpoint_id)
    return report


def _send_and_record(message: WebhookMessage, endpoint: WebhookEndpoint, attempt: int,
                     report: DeliverReport, later: dict[float, list[tuple[str, str]]],
                     now: datetime | None = None, probe: bool = False) -> AttemptOutcome:
    result = webhook_message_send(message=message, endpoint=endpoint)
    outcome = webhook_attempt_record(message=message, endpoint=endpoint, attempt=attempt,
                                     result=result, now=now, probe=probe)
    if outcome.status == WebhookMessageStatus.SUCCEEDED:
        report.succeeded += 1
    elif outcome.status == WebhookMessageStatus.PENDING:
        report.retrying += 1
        if outcome.countdown is not None:
            later[round(outcome.countdown, 1)].append((str(message.id), str(endpoint.id)))
    else:
        report.failed += 1
    return outcome


@dataclass
class ProbeReport:
    probed: bool = False  # a request was made
    succeeded: bool = False
    next_probe_at: datetime | None = None


def webhook_endpoint_probe(*, endpoint_id: str, now: datetime | None = None) -> ProbeReport:
    """One probe of a backed-off endpoint whose probe is due: its oldest due message, sent
    once. A success drains the queue (published after this); a failure sets the next step.
    Nothing is sent if the probe is not due (a duplicate task) or the endpoint is disabled."""
    now = now or timezone.now()
    report = ProbeReport()
    with connection.cursor() as cursor:
        cursor.execute(_PROBE_SLOT_SQL, {"id": endpoint_id, "lease_until": _attempt_lease(now),
                                         "due_before": now + DUE_TOLERANCE})
        if cursor.fetchone() is None:
            return report
    queue = WebhookMessage.objects.filter(endpoint_id=UUID(str(endpoint_id)),
                                          status=WebhookMessageStatus.PENDING)
    message = (queue.filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + DUE_TOLERANCE))
               .select_related("endpoint").order_by("created_at", "id").first())
    attempt = webhook_message_claim(message_id=str(message.id), now=now, probe=True) if message else None
    if message is None or attempt is None:
        # Nothing due: probe again when the earliest waiting message is due; with nothing
        # queued the backoff ends (the next message is sent at once and is the probe).
        earliest = queue.order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first()
        WebhookEndpoint.objects.filter(id=endpoint_id).update(
            next_probe_at=max(earliest, now) if earliest else (now if queue.exists() else None),
            updated_at=now)
        report.next_probe_at = earliest
        return report
    report.probed = True
    deliver = DeliverReport()
    later: dict[float, list[tuple[str, str]]] = defaultdict(list)
    outcome = _send_and_record(message, message.endpoint, attempt, deliver, later, now=now,
                               probe=True)
    for countdown, items in later.items():
        webhook_messages_enqueue(items=items, countdown=countdown)
    report.succeeded = outcome.status == WebhookMessageStatus.SUCCEEDED
    if outcome.endpoint_disabled:
        return report
    if outcome.next_probe_at is not None:
        report.next_probe_at = outcome.next_probe_at
        probe_in = outcome.probe_countdown
        if probe_in is not None:
            webhook_endpoint_probe_enqueue(endpoint_id=endpoint_id, countdown=probe_in)
    elif not report.succeeded:
        # A message-level failure (4xx, redirect): the endpoint answers, so it is up.
        webhook_endpoint_recover(endpoint_id=endpoint_id, now=now)
    if report.succeeded:
        webhook_endpoint_drain_enqueue(endpoint_id=endpoint_id)
    return report


def webhook_endpoint_recover(*, endpoint_id: str, now: datetime | None = None) -> int:
    """Ends an endpoint's backoff (its streak stays until a success) and gives its parked
    messages a lease again; publishes the drain. Returns how many were parked."""
    now = now or timezone.now()
    WebhookEndpoint.objects.filter(id=endpoint_id).update(next_probe_at=None, probe_failures=0,
                                                          updated_at=now)
    with connection.cursor() as cursor:
        cursor.execute(_UNPARK_SQL, {"id": endpoint_id, "now": now, "lease_until": now + timedelta(
            seconds=settings.WEBHOOKS_REQUEUE_AFTER_SECONDS)})
        unparked = cursor.rowcount
    webhook_endpoint_drain_enqueue(endpoint_id=endpoint_id)
    return unparked


@dataclass
class DrainReport:
    sent: int = 0
    more: bool = False  # another batch was published


def webhook_endpoint_drain(*, endpoint_id: str, now: datetime | None = None) -> DrainReport:
    """Sends an endpoint's due queued messages, oldest first, WEBHOOKS_DRAIN_BATCH at a time;
    publishes the next batch while there is more and the endpoint keeps answering."""
    now = now or timezone.now()
    batch = max(1, int(getattr(settings, "WEBHOOKS_DRAIN_BATCH", 100)))
    ids = [str(i) for i in WebhookMessage.objects.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + DUE_TOLERANCE),
        endpoint_id=UUID(str(endpoint_id)), status=WebhookMessageStatus.PENDING,
        endpoint__next_probe_at__isnull=True, endpoint__disabled_at__isnull=True,
        endpoint__deleted_at__isnull=True,
    ).order_by("created_at", "id").values_list("id", flat=True)[:batch]]
    if not ids:
        return DrainReport()
    report = webhook_messages_deliver(message_ids=ids)
    drained = DrainReport(sent=report.claimed)
    still_up = WebhookEndpoint.objects.filter(id=endpoint_id, next_probe_at__isnull=True,
                                              disabled_at__isnull=True, deleted_at__isnull=True)
    if len(ids) == batch and report.claimed and still_up.exists():
        drained.more = True
        webhook_endpoint_drain_enqueue(endpoint_id=endpoint_id)
    return drained
