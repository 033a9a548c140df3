"""The worker side: claim → check suppressions → render → admit (breaker, rate limit) →
send through the channel's provider (failover down the list) → record → retry or finish.

A delivery is claimed with one atomic UPDATE that only matches rows still claimable, so two
workers (or a redelivered broker message) never send the same delivery. Each outcome is recorded
right after its provider call returns, before the task is acknowledged (acks_late): a worker
killed mid-batch leaves its unrecorded deliveries `sending`, and the relay sweeper hands them out
again when their lease ends. Work the gates refuse (breaker open, rate limit reached) is deferred
by a countdown without spending an attempt: never slept on, never failed for that reason alone.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from apps.clients.models import Client
from apps.core import tracing
from apps.core.correlation import current_request_id
from apps.core.db.plans import planned_per_run
from apps.core.db.rows import model_columns
from apps.core.logging import redact_pii
from apps.core.tasks import Publication, publications_publish, publications_publish_on_commit
from apps.preferences.center import preference_center_url
from apps.preferences.selectors import (
    Decision,
    Verdict,
    frequency_cap_release,
    preference_decisions,
)
from apps.preferences.unsubscribe import list_unsubscribe_headers
from apps.recipients.models import Recipient
from apps.recipients.selectors import active_device_tokens
from apps.recipients.services import devices_deactivate
from apps.templates.rendering import (
    RenderedMessage,
    RenderError,
    reads_links,
    render_for_channel,
    renders_alike,
)
from apps.templates.selectors import template_versions_cached
from apps.webhooks.outbound.outbox import (
    records_webhook_events,
    subscriptions_read_once,
    webhook_completions_record,
)

from . import gate, instrumentation
from .enqueue import deliveries_gather_take, deliveries_publications, gather_publication
from .models import Delivery, DeliveryStatus, Notification
from .policy import RetryPolicy, retry_policy
from .providers.base import OutboundMessage, Outcome, Provider, SendResult
from .providers.registry import client_order, providers_for
from .status import notifications_refresh_status
from .suppressions import SuppressionItem, suppressed_deliveries, suppressions_add

logger = logging.getLogger(__name__)

# A countdown message may arrive a little before its due time; claim it anyway.
DUE_TOLERANCE = timedelta(seconds=1)

# Every statement here that changes several deliveries locks them first in id order (as
# receipts do), so two of them never wait on each other's rows in a cycle (a deadlock). The
# claim does not wait at all: rows another transaction holds right now (the accept's
# pending → queued update, a receipt, a duplicate task's claim) are skipped and asked for again
# once that transaction is over (`deliveries_claim`).
_CLAIM_SQL = """
WITH locked AS (
    SELECT id, CASE WHEN status IN ('pending', 'queued') THEN updated_at END AS waiting_since
    FROM notifications_delivery
    WHERE id = ANY(%(ids)s::uuid[])
      AND status IN ('pending', 'queued', 'retrying')
      AND (due_at IS NULL OR due_at <= %(due_before)s)
    ORDER BY id
    FOR NO KEY UPDATE SKIP LOCKED
), claimed AS (
    UPDATE notifications_delivery AS d
    SET status = 'sending', attempts = d.attempts + 1,
        lease_until = %(now)s + make_interval(secs => CASE WHEN d.priority = 'critical'
                                              THEN %(lease_critical)s ELSE %(lease)s END),
        updated_at = %(now)s
    FROM locked
    WHERE d.id = locked.id
    RETURNING d.id, d.attempts, locked.waiting_since
), events AS (
    INSERT INTO notifications_deliveryevent
        (delivery_id, status, event, provider, provider_message_id, provider_event_id,
         error_code, error_message, detail, occurred_at, created_at)
    SELECT id, 'sending', 'claimed', '', '', '', '', '',
           jsonb_build_object('attempt', attempts), %(now)s, %(now)s
    FROM claimed
)
SELECT id, attempts, waiting_since FROM claimed
"""

# The waiting deliveries of one priority that a task with room in its batch takes along
# (`deliveries_claim_waiting`): `pending`/`queued` rows whose own message has waited at least
# DISPATCH_COALESCE_AFTER_SECONDS, oldest lease (= oldest accept) first. Their own messages,
# still in the queue, then find nothing to claim. Through the relay sweeper's index
# (`delivery_inflight_lease`); rows someone holds are skipped, never waited for. Only rows
# with no due time: a deferred or retrying row (due_at set) comes back with its own message
# at its time, with the rate-limit tokens it booked (`prepaid`); taken along early it would
# ask the bucket again, be deferred again and leave its booking unspent (failover churn).
_CLAIM_WAITING_SQL = """
WITH locked AS (
    SELECT id FROM notifications_delivery
    WHERE status IN ('pending', 'queued')
      AND priority = %(priority)s
      AND updated_at <= %(waited_since)s
      AND due_at IS NULL
      AND lease_until IS NOT NULL
    ORDER BY lease_until
    LIMIT %(limit)s
    FOR NO KEY UPDATE SKIP LOCKED
), claimed AS (
    UPDATE notifications_delivery AS d
    SET status = 'sending', attempts = d.attempts + 1,
        lease_until = %(now)s + make_interval(secs => %(lease)s),
        updated_at = %(now)s
    FROM locked
    WHERE d.id = locked.id
    RETURNING d.id, d.attempts
), events AS (
    INSERT INTO notifications_deliveryevent
        (delivery_id, status, event, provider, provider_message_id, provider_event_id,
         error_code, error_message, detail, occurred_at, created_at)
    SELECT id, 'sending', 'claimed', '', '', '', '', '',
           jsonb_build_object('attempt', attempts, 'coalesced', true), %(now)s, %(now)s
    FROM claimed
)
SELECT id, attempts FROM claimed
"""

# Which of these rows looked claimable (without locking): the ones a claim skipped because
# another transaction held them.
_CLAIMABLE_SQL = """
SELECT id FROM notifications_delivery
WHERE id = ANY(%(ids)s::uuid[]) AND status IN ('pending', 'queued', 'retrying')
  AND (due_at IS NULL OR due_at <= %(due_before)s)
"""
# The lease of rows a worker still holds, renewed while its batch runs (see `LeaseKeeper`):
# only rows still `sending` in the attempt this worker claimed, never waiting for a row lock
# (a row someone else is changing right now is renewed next time, or has left `sending`).
_RENEW_SQL = """
WITH held AS (
    SELECT d.id FROM notifications_delivery AS d
    JOIN unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS x(id, attempt)
      ON x.id = d.id AND d.status = 'sending' AND d.attempts = x.attempt
    ORDER BY d.id
    FOR NO KEY UPDATE OF d SKIP LOCKED
)
UPDATE notifications_delivery AS d
SET lease_until = %(now)s + make_interval(secs => CASE WHEN d.priority = 'critical'
                                          THEN %(lease_critical)s ELSE %(lease)s END)
FROM held
WHERE d.id = held.id
"""

# How long a claim waits, in all, for rows other transactions hold (they hold them for one
# statement); what is still held then is left to the relay sweeper.
CLAIM_WAIT_SECONDS = 2.0
CLAIM_PAUSE_SECONDS = 0.01

# One statement for a batch of outcomes: each delivery row (only if still in the attempt that
# produced the outcome) and its event. The rows are locked in id order first (see above); an
# outcome of an attempt that is no longer the row's (a receipt recorded the send meanwhile, or
# the sweeper handed the row out again) changes neither its status nor its error, and a `sent`
# the row already records is not written twice.
# `d.id = ANY(ids)` repeats the input's ids for the planner: it estimates any
# jsonb_to_recordset at 100 rows, and against a table of a few thousand rows (a new service,
# the bench after its truncation) that made a hash join over two sequential scans of the
# deliveries the cheaper-looking plan; with the ids as an array it knows their number and
# takes the primary key.
_RECORD_SQL = """
WITH input AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS x(
        id uuid, attempt int, status text, event text, provider text, message_id text,
        error_code text, error_message text, segments int, due_at timestamptz,
        lease_until timestamptz, attempts_delta int, is_sent bool, is_final bool, detail jsonb)
), locked AS (
    SELECT d.id, (d.status = 'sending' AND d.attempts = i.attempt) AS current,
           d.sent_at IS NOT NULL AS was_sent
    FROM notifications_delivery AS d JOIN input AS i ON i.id = d.id
    WHERE d.id = ANY(%(ids)s::uuid[])
    ORDER BY d.id
    FOR NO KEY UPDATE OF d
), updated AS (
    UPDATE notifications_delivery AS d
    SET status = CASE WHEN l.current THEN i.status ELSE d.status END,
        attempts = CASE WHEN l.current THEN d.attempts + i.attempts_delta ELSE d.attempts END,
        provider = COALESCE(NULLIF(i.provider, ''), d.provider),
        provider_message_id = COALESCE(NULLIF(i.message_id, ''), d.provider_message_id),
        error_code = CASE WHEN l.current THEN i.error_code ELSE d.error_code END,
        error_message = CASE WHEN l.current THEN i.error_message ELSE d.error_message END,
        segments = COALESCE(i.segments, d.segments),
        due_at = CASE WHEN l.current THEN i.due_at ELSE d.due_at END,
        lease_until = CASE WHEN l.current THEN i.lease_until ELSE d.lease_until END,
        sent_at = CASE WHEN i.is_sent THEN COALESCE(d.sent_at, %(now)s) ELSE d.sent_at END,
        delivered_at = CASE WHEN l.current AND i.status = 'delivered'
                            THEN COALESCE(d.delivered_at, %(now)s) ELSE d.delivered_at END,
        completed_at = CASE WHEN i.is_final AND l.current THEN %(now)s ELSE d.completed_at END,
        updated_at = %(now)s
    FROM input AS i JOIN locked AS l ON l.id = i.id
    WHERE d.id = i.id AND d.id = ANY(%(ids)s::uuid[])
    RETURNING d.id, d.status, l.current, l.was_sent
)
INSERT INTO notifications_deliveryevent
    (delivery_id, status, event, provider, provider_message_id, provider_event_id,
     error_code, error_message, detail, occurred_at, created_at)
SELECT i.id, u.status, i.event, i.provider, i.message_id, '', i.error_code, i.error_message,
       i.detail, %(now)s, %(now)s
FROM input AS i JOIN updated AS u ON u.id = i.id
-- A `sent` the provider's receipt already recorded is not written twice, unless it says the
-- send failed over (only the worker knows which providers it skipped) or carries the send's
-- span (tracing on: the receipts' spans link to it).
WHERE u.current OR NOT (i.is_sent AND u.was_sent) OR i.detail ?| array['failed_over_from', 'traceparent']
"""


PREFERENCE_MESSAGES = {
    "channel_disabled": "The recipient turned this channel off.",
    "category_opted_out": "The recipient opted out of this category.",
    "frequency_cap": "The recipient's frequency cap for this category is reached.",
}


@dataclass
class DispatchReport:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    deferred: int = 0
    failed: int = 0
    suppressed: int = 0
    held: int = 0
    notification_ids: set[str] = field(default_factory=set)
    # What the caller must publish (after commit): retries and deferrals, client webhooks.
    publications: list[Publication] = field(default_factory=list)


@dataclass
class Attempt:
    """What one delivery's attempt came to (computed in a sender thread)."""

    result: SendResult | None = None  # None: no provider was called (deferred)
    defer_seconds: float = 0.0
    defer_reason: str = ""
    defer_provider: Provider | None = None  # the provider whose rate limit was reached
    failed_over_from: list[str] = field(default_factory=list)
    traceparent: str = ""  # the send's span (tracing on), stored with the attempt


def lease_seconds(priority: str) -> float:
    """How long a claim (or a renewal) holds a delivery: one provider call and a margin."""
    lease = float(settings.DELIVERY_LEASE_SECONDS)
    if priority == "critical":
        return min(float(settings.DELIVERY_LEASE_SECONDS_CRITICAL), lease)
    return lease


def _lease_params() -> dict[str, float]:
    return {"lease": lease_seconds("normal"), "lease_critical": lease_seconds("critical")}


class LeaseKeeper:
    """Keeps the leases of the rows a worker holds while its batch runs: every
    DELIVERY_LEASE_RENEW_SECONDS (at most half the shortest lease) one UPDATE moves the lease
    of the rows still `sending` in this worker's attempt. A killed worker renews nothing, so
    its rows come back one lease after its last renewal; a live one never loses them to the
    sweeper (which would hand them to another worker: a duplicate send)."""

    def __init__(self, attempts: dict[str, int], priorities: Sequence[str]) -> None:
        self.attempts = dict(attempts)  # held rows: id → attempt
        shortest = min((lease_seconds(p) for p in priorities), default=lease_seconds("normal"))
        self.every = max(min(float(settings.DELIVERY_LEASE_RENEW_SECONDS), shortest / 2), 0.05)
        self.last = time.monotonic()
        self.renewals = 0

    def release(self, ids: Sequence[str]) -> None:
        """These rows' outcomes are recorded: they are no longer this worker's to keep."""
        for i in ids:
            self.attempts.pop(i, None)

    def timeout(self) -> float:
        return max(self.last + self.every - time.monotonic(), 0.0)

    def renew_if_due(self) -> None:
        if not self.attempts or time.monotonic() < self.last + self.every:
            return
        self.last = time.monotonic()
        ids = list(self.attempts)
        try:
            with connection.cursor() as cursor:
                cursor.execute(_RENEW_SQL, {"ids": ids, "attempts": [self.attempts[i] for i in ids],
                                            "now": timezone.now(), **_lease_params()})
            self.renewals += 1
        except DatabaseError:
            # The batch goes on; the next renewal (or the outcome write) tries again.
            logger.warning("could not renew the lease of %d deliveries", len(ids), exc_info=True)


def deliveries_claim(*, delivery_ids: Sequence[str]) -> dict[str, int]:
    """Atomically takes the still-claimable deliveries among these: id → attempt number.

    Never waits for a row lock (so it never deadlocks): rows locked by another transaction at
    that instant are asked for again, briefly, until that transaction is over."""
    return _claim(delivery_ids)[0]


def _claim(delivery_ids: Sequence[str]) -> tuple[dict[str, int], datetime | None]:
    """`deliveries_claim`, and since when the oldest of the claimed `pending`/`queued` rows
    had been waiting for this message (None: none was)."""
    remaining = [str(i) for i in delivery_ids]
    claimed: dict[str, int] = {}
    oldest: datetime | None = None
    deadline = time.monotonic() + CLAIM_WAIT_SECONDS
    while remaining:
        now = timezone.now()
        params: dict[str, Any] = {"ids": remaining, "now": now, **_lease_params(),
                                  "due_before": now + DUE_TOLERANCE}
        with connection.cursor() as cursor:
            cursor.execute(_CLAIM_SQL, params)
            rows = cursor.fetchall()
            got = {str(row[0]): int(row[1]) for row in rows}
            claimed.update(got)
            for row in rows:
                if row[2] is not None and (oldest is None or row[2] < oldest):
                    oldest = row[2]
            remaining = [i for i in remaining if i not in got]
            if not remaining or time.monotonic() >= deadline:
                break
            cursor.execute(_CLAIMABLE_SQL, params)
            held = {str(row[0]) for row in cursor.fetchall()}
        remaining = [i for i in remaining if i in held]
        if remaining:
            time.sleep(CLAIM_PAUSE_SECONDS)
    if remaining:
        logger.warning("%d deliveries stayed locked by other transactions; the relay sweeper "
                       "hands them out again", len(remaining))
    return claimed, oldest


def _waited_long(since: datetime | None) -> bool:
    after = float(settings.DISPATCH_COALESCE_AFTER_SECONDS)
    return (after > 0 and since is not None
            and since <= timezone.now() - timedelta(seconds=after))


def deliveries_claim_waiting(*, priority: str, limit: int) -> dict[str, int]:
    """Takes up to `limit` deliveries of this priority that are waiting for a worker (their
    message has been in the queue DISPATCH_COALESCE_AFTER_SECONDS or more): id → attempt.

    Single sends arrive one per task; a worker that sends one per task (one provider call each,
    a pool of a few processes) falls behind a steady stream of them, and each would wait its
    turn in the queue (minutes after a broker or database outage). A task with room in its
    batch takes those waiting along and sends them in its thread pool, as a chunk is sent.
    Never `critical` (one per task, on purpose). Off when the setting is 0."""
    after = float(settings.DISPATCH_COALESCE_AFTER_SECONDS)
    if after <= 0 or limit <= 0 or priority == "critical":
        return {}
    now = timezone.now()
    params: dict[str, Any] = {"priority": priority, "limit": limit, "now": now,
                              "waited_since": now - timedelta(seconds=after),
                              "lease": lease_seconds(priority)}
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_WAITING_SQL, params)
        return {str(row[0]): int(row[1]) for row in cursor.fetchall()}


def _row(
    *, delivery_id: str, attempt: int, status: str, event: str,
    provider: str = "", message_id: str = "", error_code: str = "", error_message: str = "",
    due_at: datetime | None = None, lease_until: datetime | None = None,
    segments: int | None = None, attempts_delta: int = 0, detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": delivery_id, "attempt": attempt, "status": status, "event": event,
        "provider": provider, "message_id": message_id, "error_code": error_code,
        # Providers echo addresses in their errors ("The 'To' number +1… is not valid").
        "error_message": redact_pii(error_message[:2000]),
        "due_at": due_at.isoformat() if due_at else None,
        "lease_until": lease_until.isoformat() if lease_until else None,
        "segments": segments, "attempts_delta": attempts_delta,
        "is_sent": status in (DeliveryStatus.SENT, DeliveryStatus.DELIVERED),
        "is_final": status in (DeliveryStatus.FAILED, DeliveryStatus.SUPPRESSED,
                               DeliveryStatus.DELIVERED),
        "detail": {"attempt": attempt, **(detail or {})},
    }


@records_webhook_events
def _write_many(rows: Sequence[dict[str, Any]], now: datetime) -> list[Publication]:
    """Writes a batch of outcome rows (one statement). Returns what must be published once it
    is committed: the client webhooks it wrote to the outbox (`records_webhook_events`)."""
    if rows:
        with connection.cursor() as cursor, planned_per_run():
            cursor.execute(_RECORD_SQL, {"rows": json.dumps(list(rows), default=str), "now": now,
                                         "ids": [row["id"] for row in rows]})
    return []


def outcome_row(
    *, delivery_id: str, attempt: int, result: SendResult, now: datetime,
    detail: dict[str, Any] | None = None, policy: RetryPolicy | None = None,
) -> tuple[dict[str, Any], str, datetime | None]:
    """The row recording one provider call's outcome, the new status and, for a retry, when."""
    policy = policy or retry_policy(channel="")
    due_at: datetime | None = None
    lease_until: datetime | None = None
    detail = {**(detail or {}), **result.detail}
    if result.outcome == Outcome.SENT:
        status, event = DeliveryStatus.SENT, "sent"
    elif result.outcome == Outcome.DELIVERED:  # stored where it is read (in-app): final
        status, event = DeliveryStatus.DELIVERED, "delivered"
    elif result.outcome == Outcome.RETRYABLE and attempt < policy.max_attempts:
        status, event = DeliveryStatus.RETRYING, "retry_scheduled"
        due_at = now + timedelta(seconds=policy.backoff(attempt, result.retry_after))
        # If the countdown message is lost, the sweeper takes over a little after it was due.
        lease_until = due_at + timedelta(seconds=settings.RELAY_REQUEUE_AFTER_SECONDS)
        detail["next_attempt_at"] = due_at.isoformat()
    else:
        status, event = DeliveryStatus.FAILED, "failed"
        if result.outcome == Outcome.RETRYABLE:
            detail["gave_up_after_attempts"] = attempt
    row = _row(
        delivery_id=delivery_id, attempt=attempt, status=status, event=event,
        provider=result.provider, message_id=result.provider_message_id,
        error_code=result.error_code, error_message=result.error_message, due_at=due_at,
        lease_until=lease_until, segments=result.segments, detail=detail,
    )
    return row, status.value, due_at


def delivery_record_outcome(
    *, delivery_id: str, attempt: int, result: SendResult, now: datetime | None = None,
    detail: dict[str, Any] | None = None, policy: RetryPolicy | None = None,
) -> tuple[str, datetime | None]:
    """Writes the outcome of one provider call and its event in one statement.

    Returns the new status and, when a retry is due, its time."""
    now = now or timezone.now()
    row, status, due_at = outcome_row(delivery_id=delivery_id, attempt=attempt, result=result,
                                      now=now, detail=detail, policy=policy)
    publications_publish_on_commit(_write_many([row], now))
    return status, due_at


def defer_row(
    *, delivery_id: str, attempt: int, seconds: float, reason: str, now: datetime
) -> tuple[dict[str, Any], datetime]:
    """The row putting a claimed delivery back without spending its attempt."""
    due_at = now + timedelta(seconds=seconds)
    # Rate limiting is ordinary flow control (queued); an open breaker is a provider problem.
    status = DeliveryStatus.QUEUED if reason == "rate_limited" else DeliveryStatus.RETRYING
    row = _row(
        delivery_id=delivery_id, attempt=attempt, status=status, event="deferred",
        error_code=reason if status == DeliveryStatus.RETRYING else "",
        due_at=due_at,
        lease_until=due_at + timedelta(seconds=settings.RELAY_REQUEUE_AFTER_SECONDS),
        attempts_delta=-1, detail={"reason": reason, "until": due_at.isoformat()},
    )
    return row, due_at


def build_message(delivery: Delivery, tokens: dict[str, list[str]],
                  rendered_for: dict[tuple[Any, ...], RenderedMessage] | None = None,
                  ) -> OutboundMessage:
    """The provider-neutral message for a delivery: its pinned template version rendered for
    its channel and recipient, the client's sender, and (push) the recipient's tokens.
    `rendered_for`: a chunk's memo; a version whose content never reads the recipient is
    rendered once per notification and channel (`renders_alike`)."""
    notification = delivery.notification
    version = delivery.template_version or notification.template_version
    recipient = delivery.recipient
    memo = (rendered_for if rendered_for is not None and renders_alike(version, delivery.channel)
            else None)
    key = (version.id, delivery.channel, notification.id)
    rendered = memo.get(key) if memo is not None else None
    headers = (list_unsubscribe_headers(recipient=recipient, category=notification.category)
               if delivery.channel == "email" else {})
    if rendered is None:
        context: dict[str, Any] = {
            **notification.variables,
            "recipient": {
                "id": recipient.external_id,
                "locale": recipient.locale,
                "timezone": recipient.timezone,
                "attributes": recipient.attributes,
            },
        }
        if delivery.channel == "email":
            context.update(_links(reads_links(version, "email"), headers, delivery))
        rendered = render_for_channel(version, delivery.channel, context)
        if memo is not None:
            memo[key] = rendered
    client = delivery.client
    sender = {"email": client.default_from_email, "sms": client.sms_from,
              "whatsapp": client.whatsapp_from}.get(delivery.channel, "")
    return OutboundMessage(
        request_id=current_request_id(),
        delivery_id=str(delivery.id),
        notification_id=str(notification.id),
        client_id=str(delivery.client_id),
        channel=delivery.channel,
        to=delivery.address,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        from_address=sender,
        category=notification.category,
        metadata=notification.metadata,
        tokens=tuple(tokens.get(str(delivery.recipient_id), ())),
        recipient_id=str(delivery.recipient_id),
        action_url=rendered.action_url,
        data=rendered.data or {},
        provider_template_id=version.whatsapp_content_sid if delivery.channel == "whatsapp" else "",
        template_variables=notification.variables if delivery.channel == "whatsapp" else {},
        headers=headers,
    )


def _links(names: frozenset[str], headers: dict[str, str], delivery: Delivery) -> dict[str, str]:
    """The recipient's links an email's content reads (rendering.LINK_NAMES): its unsubscribe
    link (the List-Unsubscribe one; "" for a critical category) and its preference center."""
    links: dict[str, str] = {}
    if "unsubscribe_url" in names:
        links["unsubscribe_url"] = headers.get("List-Unsubscribe", "").strip("<>")
    if "preferences_url" in names:
        links["preferences_url"] = preference_center_url(delivery.client_id, delivery.recipient_id)
    return links


def able_providers(providers: list[Provider], message: OutboundMessage) -> list[Provider]:
    """The channel's providers that can send this message: one that never can is no failover
    for it, so it waits for the others instead of failing there. When none can, the first
    one's build refuses it (`invalid_message`)."""
    able = [p for p in providers if not p.cannot_send(message)]
    return able if len(able) == len(providers) else (able or providers[:1])


def _send(provider: Provider, message: OutboundMessage) -> tuple[SendResult, str]:
    """One provider call; with tracing on, in a span of its own whose `traceparent` the
    attempt stores (the receipt's span links to it)."""
    with tracing.send_span(f"send {provider.name}", {"notifyhub.provider": provider.name,
                                                     "notifyhub.channel": message.channel,
                                                     "notifyhub.delivery_id": message.delivery_id}
                           ) as traceparent:
        return instrumentation.timed_send(provider, message), traceparent


def attempt_delivery(message: OutboundMessage, providers: Sequence[Provider],
                     chunk_gate: gate.ChunkGate | None = None,
                     prepaid: gate.Prepaid | None = None, urgent: bool = False) -> Attempt:
    """One attempt: the first provider whose breaker and rate limit admit it sends.

    Providers whose breaker is open are skipped (failover down the channel's list), and so is
    one that could not be reached when that left its breaker open (it opened it, or a probe
    failed): the message goes on down the list at once. If none admits it, the attempt is
    deferred by the shortest wait they gave, without spending it (so is one whose next
    provider could not be reached either): while every provider of the channel is
    unreachable, deliveries wait. With a `chunk_gate`, a provider that has a
    lane in it admits from the tokens the chunk took. `urgent` (critical, high) asks the
    providers' urgent lanes (gate.py)."""
    cost = max(len(message.tokens), 1)
    waits: list[tuple[float, str]] = []
    skipped: list[str] = []
    for provider in providers:
        lane = chunk_gate.lane(provider) if chunk_gate is not None else None
        if lane is not None:
            if not lane.take(cost):
                return Attempt(defer_seconds=max(lane.wait_seconds, 0.001),
                               defer_reason="rate_limited", defer_provider=provider)
            result, traceparent = _send(provider, message)
            open_for = lane.report(result)
        else:
            admission = gate.admit(provider, cost, prepaid, urgent=urgent)
            if not admission.allowed:
                if admission.reason == "rate_limited":
                    # Back-pressure: wait for this provider's capacity, do not spill over.
                    return Attempt(defer_seconds=admission.wait_seconds,
                                   defer_reason="rate_limited", defer_provider=provider)
                waits.append((admission.wait_seconds, admission.reason))
                skipped.append(provider.name)
                continue
            result, traceparent = _send(provider, message)
            open_for = gate.report(provider, admission, result)
        # Unreachable, and its breaker is open now or one before it in the list is: as far
        # as we know no provider of the channel can be reached, so the attempt is not spent.
        if result.unreachable and (open_for is not None or waits):
            if open_for is not None:
                waits.append((open_for, "circuit_open"))
            skipped.append(provider.name)
            continue
        return Attempt(result=result, failed_over_from=skipped, traceparent=traceparent)
    seconds, reason = min(waits) if waits else (1.0, "no_provider")
    return Attempt(defer_seconds=seconds, defer_reason=reason)


_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None
_pool_lock = threading.Lock()


def sender_pool() -> ThreadPoolExecutor:
    """The process's provider-call threads (created after fork, sized DISPATCH_CONCURRENCY)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=settings.DISPATCH_CONCURRENCY,
                                       thread_name_prefix="send")
            _pool_pid = os.getpid()
        return _pool


# What dispatch reads of a delivery and its recipient (never the recipient's own encrypted
# addresses: the delivery's copy is what is sent to).
_DELIVERY_FIELDS = (
    "id", "notification_id", "client_id", "recipient_id", "channel", "priority", "status",
    "template_version_id", "address", "attempts", "is_test", "created_at",
    "recipient__id", "recipient__client_id", "recipient__external_id", "recipient__locale",
    "recipient__timezone", "recipient__attributes",
)
_NOTIFICATION_FIELDS = ("id", "client_id", "template_version_id", "variables", "category",
                        "metadata", "priority", "is_test", "created_at")

class _JoinedRead:
    """The statement (built once per process) reading deliveries with their recipient,
    notification and client: the same columns and values as
    `select_related(...).only(...)`, without compiling the ORM query for every task."""

    def __init__(self) -> None:
        self.parts = [
            model_columns(Delivery, "d", frozenset(n for n in _DELIVERY_FIELDS if "__" not in n)),
            model_columns(Recipient, "r", frozenset(
                n.split("__", 1)[1] for n in _DELIVERY_FIELDS if n.startswith("recipient__"))),
            model_columns(Notification, "n", frozenset(_NOTIFICATION_FIELDS)),
            model_columns(Client, "c"),
        ]
        self.sql = (
            f"SELECT {', '.join(part.sql for part in self.parts)} FROM notifications_delivery d"
            f" JOIN {Recipient._meta.db_table} r ON r.id = d.recipient_id"
            f" JOIN {Notification._meta.db_table} n ON n.id = d.notification_id"
            f" JOIN {Client._meta.db_table} c ON c.id = d.client_id"
            " WHERE d.id = ANY(%s::uuid[])"
        )

    def __call__(self, ids: Sequence[str]) -> list[Delivery]:
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [[str(i) for i in ids]])
            rows = cursor.fetchall()
        out = []
        for row in rows:
            objs, start = [], 0
            for part in self.parts:
                objs.append(part.instance(row[start:start + len(part)]))
                start += len(part)
            delivery, recipient, notification, client = objs
            delivery.recipient = recipient
            delivery.notification = notification
            delivery.client = client
            out.append(delivery)
        return out


_joined_read: _JoinedRead | None = None


def _load_joined(ids: Sequence[str]) -> list[Delivery]:
    global _joined_read
    if _joined_read is None:
        _joined_read = _JoinedRead()
    return _joined_read(ids)


class _ChunkRead:
    """A chunk's deliveries with their recipients (one statement), then the notifications and
    clients they share, each read once (a join would repeat a notification's variables per
    row): the instances `select_related("recipient").only(...)` and two `filter(id__in=…)`
    would give, from statements built once per process."""

    def __init__(self) -> None:
        joined = _JoinedRead()
        self.delivery, self.recipient, notification, client = joined.parts
        self.deliveries_sql = (
            f"SELECT {self.delivery.sql}, {self.recipient.sql} FROM notifications_delivery d"
            f" JOIN {Recipient._meta.db_table} r ON r.id = d.recipient_id"
            " WHERE d.id = ANY(%s::uuid[])")
        self.shared = [
            (notification, f"SELECT {notification.sql} FROM {Notification._meta.db_table} n"
                           " WHERE n.id = ANY(%s::uuid[])"),
            (client, f"SELECT {client.sql} FROM {Client._meta.db_table} c"
                     " WHERE c.id = ANY(%s::uuid[])"),
        ]

    def __call__(self, ids: Sequence[str]) -> tuple[list[Delivery], dict[Any, Any], dict[Any, Any]]:
        split = len(self.delivery)
        with connection.cursor() as cursor:
            cursor.execute(self.deliveries_sql, [[str(i) for i in ids]])
            deliveries = []
            for row in cursor.fetchall():
                delivery = self.delivery.instance(row[:split])
                delivery.recipient = self.recipient.instance(row[split:])
                deliveries.append(delivery)
            found = []
            for (columns, sql), wanted in zip(self.shared, (
                    {d.notification_id for d in deliveries}, {d.client_id for d in deliveries}),
                    strict=True):
                cursor.execute(sql, [[str(i) for i in wanted]])
                found.append({obj.id: obj for obj in map(columns.instance, cursor.fetchall())})
        return deliveries, found[0], found[1]


_chunk_read: _ChunkRead | None = None


# Up to this many claimed deliveries (a single send, a critical task) are read with their
# notification and client joined: one statement instead of three. Above it, each shared row
# is read once for the chunk (a join would repeat the notification's variables per row).
JOINED_LOAD_MAX = 4


def load_deliveries(ids: Sequence[str]) -> list[Delivery]:
    """The claimed deliveries with what sending them needs: each shared row (notification,
    client, template version) read once for the chunk rather than once per delivery."""
    if len(ids) <= JOINED_LOAD_MAX:
        deliveries = _load_joined(ids)
        notifications = {d.notification_id: d.notification for d in deliveries}
        clients = {d.client_id: d.client for d in deliveries}
    else:
        global _chunk_read
        if _chunk_read is None:
            _chunk_read = _ChunkRead()
        deliveries, notifications, clients = _chunk_read(ids)
    versions = template_versions_cached(
        {n.template_version_id for n in notifications.values()}
        | {d.template_version_id for d in deliveries if d.template_version_id})
    for notification in notifications.values():
        notification.template_version = versions[notification.template_version_id]
    for delivery in deliveries:
        delivery.notification = notifications[delivery.notification_id]
        delivery.client = clients[delivery.client_id]
        if delivery.template_version_id:
            delivery.template_version = versions[delivery.template_version_id]
    return deliveries


def deliveries_dispatch(
    *, delivery_ids: Sequence[str], prepaid: dict[str, int] | None = None,
    gather: dict[str, Any] | None = None,
) -> DispatchReport:
    """Claims and sends these deliveries; safe to call twice with the same ids. `prepaid`:
    provider tokens (account → count) these deliveries booked when they were deferred.
    `gather` ({"priority", "until"}): also the ids its priority's window gathered
    (enqueue.py, "Gathering"), taken once the window closes."""
    publications: list[Publication] = []
    taken: list[str] = []
    if gather is not None:
        priority = str(gather["priority"])
        room = max(int(settings.DISPATCH_CHUNK_SIZE) - len(delivery_ids), 1)
        taken, more = deliveries_gather_take(priority=priority, until=float(gather["until"]),
                                             limit=room)
        if more:  # more than a chunk in one window: the rest get their own task, now
            publications.append(gather_publication(priority=priority, until=0.0))
    try:
        with subscriptions_read_once():
            report = (_dispatch([*delivery_ids, *taken], prepaid) if delivery_ids or taken
                      else DispatchReport())
    except DatabaseError:
        # The task is retried with its own message (its `delivery_ids`), which no longer
        # names what it took from the list: those get a message of their own, as a retry
        # would (a second from now; the claim skips whatever this attempt did claim).
        if taken:
            publications_publish([*publications, *deliveries_publications(
                items=[(i, str(gather["priority"])) for i in taken if gather],
                countdown=1.0, mark_queued=False)])
        raise
    report.publications = [*publications, *report.publications]
    return report


def _dispatch(delivery_ids: Sequence[str], prepaid: dict[str, int] | None = None) -> DispatchReport:
    report = DispatchReport()
    attempts, waiting_since = _claim(delivery_ids)
    if not attempts:
        return report
    deliveries = load_deliveries(list(attempts))
    priorities = {d.priority for d in deliveries}
    room = int(settings.DISPATCH_CHUNK_SIZE) - len(attempts)
    # Only a message that itself waited (the queue is behind) looks for others waiting: a
    # worker keeping up costs no extra statement.
    if len(priorities) == 1 and room > 0 and _waited_long(waiting_since):
        waiting = deliveries_claim_waiting(priority=priorities.pop(), limit=room)
        if waiting:
            attempts.update(waiting)
            deliveries = [*deliveries, *load_deliveries(list(waiting))]
    report.claimed = len(attempts)
    keeper = LeaseKeeper(attempts, [d.priority for d in deliveries])
    # (priority, countdown, provider account whose tokens they booked or "") → (id, cost)
    later: dict[tuple[str, float, str], list[tuple[str, int]]] = defaultdict(list)
    prepaid_pool = gate.Prepaid(prepaid)
    costs: dict[str, int] = {}  # tokens a delivery's provider call takes (push: one per device)

    def deferrals(batch: Sequence[tuple[Delivery, Attempt]]) -> dict[str, tuple[float, str, int]]:
        """When each deferred delivery of this batch comes back: id → (seconds, account whose
        tokens it booked or "", cost). Rate-limited ones book their provider's next tokens (one
        call per provider): deferred once, behind every worker's work already waiting, and
        spending the booking when they come back instead of asking (and being deferred) again."""
        out: dict[str, tuple[float, str, int]] = {}
        limited: dict[tuple[str, bool], list[tuple[Delivery, Attempt, int]]] = defaultdict(list)
        providers: dict[str, Provider] = {}
        for delivery, attempt in batch:
            if attempt.result is not None:
                continue
            cost = costs.get(str(delivery.id), 1)
            if attempt.defer_reason == "rate_limited" and attempt.defer_provider is not None:
                name = gate.account_name(attempt.defer_provider)
                providers[name] = attempt.defer_provider
                limited[name, gate.is_urgent(delivery.priority)].append((delivery, attempt, cost))
            else:
                # An open breaker: spread the comeback a little (10 %) so chunks deferred
                # together do not all ask again in the same instant.
                out[str(delivery.id)] = (attempt.defer_seconds * random.uniform(1.0, 1.1), "", cost)
        for (name, urgent), items in limited.items():
            booking = gate.reserve(providers[name], sum(cost for _, _, cost in items),
                                   urgent=urgent)
            position = 0
            for delivery, attempt, cost in items:
                position += cost
                if position <= booking.booked:
                    out[str(delivery.id)] = (booking.at(position), name, cost)
                else:  # beyond the booking horizon (or the limiter unreachable): ask again then
                    out[str(delivery.id)] = (max(booking.at(position), attempt.defer_seconds), "", cost)
        return out

    def settle(batch: Sequence[tuple[Delivery, Attempt]]) -> None:
        """Records a batch of finished attempts in one statement, then their side effects."""
        now = timezone.now()
        rows: list[dict[str, Any]] = []
        dead_tokens: dict[tuple[Any, str], list[str]] = defaultdict(list)
        suppress: list[SuppressionItem] = []
        deferred = deferrals(batch)
        for delivery, attempt in batch:
            did = str(delivery.id)
            report.notification_ids.add(str(delivery.notification_id))
            result = attempt.result
            if result is None:
                seconds, booked_on, cost = deferred[did]
                # Countdowns in half-second steps (never before the booked token): a few
                # tasks, not one per delivery.
                seconds = math.ceil(seconds * 2) / 2
                deferred_row, _ = defer_row(delivery_id=did, attempt=attempts[did],
                                            seconds=seconds, reason=attempt.defer_reason, now=now)
                rows.append(deferred_row)
                report.deferred += 1
                later[(delivery.priority, seconds, booked_on)].append((did, cost))
                continue
            detail: dict[str, Any] = {}
            if attempt.failed_over_from:
                detail["failed_over_from"] = attempt.failed_over_from
            if attempt.traceparent:
                detail["traceparent"] = attempt.traceparent
            policy = retry_policy(channel=delivery.channel,
                                  client_overrides=delivery.client.delivery_policy)
            row, status, due_at = outcome_row(delivery_id=did, attempt=attempts[did],
                                              result=result, now=now, detail=detail or None,
                                              policy=policy)
            rows.append(row)
            # A simulated outcome (test mode: the sandbox answered) never changes what live
            # sends use: no device deactivated, no address suppressed.
            if result.invalid_tokens and not delivery.is_test:
                for token in result.invalid_tokens:  # each with its own reason
                    dead_tokens[(delivery.client_id, result.token_reason(token))].append(token)
            if result.suppress_address and result.outcome == Outcome.PERMANENT and not delivery.is_test:
                suppress.append(SuppressionItem(
                    client_id=delivery.client_id, channel=delivery.channel,
                    address=delivery.address, reason=result.error_code,
                    detail=result.error_message, delivery_id=delivery.id))
            if status in (DeliveryStatus.SENT, DeliveryStatus.DELIVERED):
                report.sent += 1
            elif status == DeliveryStatus.RETRYING and due_at is not None:
                report.retrying += 1
                countdown = max((due_at - now).total_seconds(), 0.0)
                later[(delivery.priority, round(countdown, 1), "")].append((did, 1))
            else:
                report.failed += 1
        # Dead tokens and bad addresses first: once a status says `sent`/`failed`, its
        # consequences are already visible.
        for (client_id, reason), tokens in dead_tokens.items():
            devices_deactivate(client_id=client_id, tokens=tokens, reason=reason)
        suppressions_add(items=suppress)
        report.publications += _write_many(rows, now)
        keeper.release([str(d.id) for d, _ in batch])
        instrumentation.observe_outcomes(rows, [d for d, _ in batch], now)

    def finish_now(delivery: Delivery, result: SendResult) -> None:
        settle([(delivery, Attempt(result=result))])

    # The recipient's preferences decide first (authoritative at send time): opted out →
    # suppressed; quiet hours → held until they end, without spending the attempt.
    now = timezone.now()
    decisions = preference_decisions(deliveries=deliveries, now=now)
    preference_rows: list[dict[str, Any]] = []
    allowed: list[Delivery] = []
    for delivery in deliveries:
        did = str(delivery.id)
        decision = decisions.get(did)
        if decision is None or decision.allowed:
            allowed.append(delivery)
            continue
        report.notification_ids.add(str(delivery.notification_id))
        if decision.verdict == Verdict.HOLD and decision.until is not None:
            preference_rows.append(_row(
                delivery_id=did, attempt=attempts[did], status=DeliveryStatus.SCHEDULED,
                event="held", due_at=decision.until, lease_until=decision.until,
                attempts_delta=-1, detail={"reason": decision.reason,
                                           "until": decision.until.isoformat()}))
            report.held += 1
        else:
            preference_rows.append(_row(
                delivery_id=did, attempt=attempts[did], status=DeliveryStatus.SUPPRESSED,
                event="suppressed", error_code=decision.reason,
                error_message=PREFERENCE_MESSAGES.get(decision.reason, decision.reason)))
            report.suppressed += 1
    report.publications += _write_many(preference_rows, now)
    instrumentation.observe_outcomes(preference_rows, deliveries, now)
    deliveries = allowed
    not_sent: dict[str, Decision] = {}  # allowed under a frequency cap, then not sent

    # Suppressed addresses end here, before anything is rendered or sent.
    blocked = suppressed_deliveries(deliveries=[d for d in deliveries if d.channel != "push"])
    push_tokens = active_device_tokens(
        recipient_ids=[d.recipient_id for d in deliveries if d.channel == "push"]
    )
    work: list[tuple[Delivery, OutboundMessage, list[Provider]]] = []
    # (channel, mode, client's order) → providers, per chunk
    routes: dict[tuple[str, str, tuple[str, ...]], list[Provider]] = {}
    suppressed_rows: list[dict[str, Any]] = []
    rendered_for: dict[tuple[Any, ...], RenderedMessage] = {}  # the chunk's render memo
    for delivery in deliveries:
        did = str(delivery.id)
        reason = blocked.get(did)
        no_device = delivery.channel == "push" and not push_tokens.get(str(delivery.recipient_id))
        if (reason or no_device) and did in decisions:
            not_sent[did] = decisions[did]
        if reason:
            suppressed_rows.append(_row(
                delivery_id=did, attempt=attempts[did], status=DeliveryStatus.SUPPRESSED,
                event="suppressed", error_code="suppressed",
                error_message=f"The address is on the suppression list ({reason})."))
            report.suppressed += 1
            report.notification_ids.add(str(delivery.notification_id))
            continue
        # A test key's delivery gets the test-mode providers (the sandbox), a live one the live.
        # The client's own provider order (admin), if it has one for the channel.
        order = client_order(delivery.client.provider_order, delivery.channel)
        route = (delivery.channel, delivery.mode, order)
        if route not in routes:
            routes[route] = providers_for(delivery.channel, mode=delivery.mode, order=order)
        providers = routes[route]
        if not providers:
            finish_now(delivery, SendResult.permanent("", "channel_not_supported",
                                                      f"No provider for {delivery.channel}."))
            continue
        try:
            message = build_message(delivery, push_tokens, rendered_for)
        except RenderError as exc:
            if did in decisions:
                not_sent[did] = decisions[did]
            finish_now(delivery, SendResult.permanent("", "render_error", str(exc)))
            continue
        if delivery.channel == "push" and not message.tokens:
            finish_now(delivery, SendResult.permanent("", "no_active_device",
                                                      "The recipient has no active device."))
            continue
        costs[did] = max(len(message.tokens), 1)
        work.append((delivery, message, able_providers(providers, message)))
    report.publications += _write_many(suppressed_rows, now)
    instrumentation.observe_outcomes(suppressed_rows, deliveries, now)
    if not_sent:
        frequency_cap_release(decisions=not_sent)

    # Batched providers (in-app: stored, not called) take their messages in one call each,
    # recorded in the same transaction; no gate.
    batched: dict[Provider, list[tuple[Delivery, OutboundMessage]]] = defaultdict(list)
    for delivery, message, providers in work:
        if providers[0].batched:
            batched[providers[0]].append((delivery, message))
    if batched:
        work = [item for item in work if not item[2][0].batched]
        for store, stored in batched.items():
            with transaction.atomic():
                results = store.send_many([message for _, message in stored])
                settle([(delivery, Attempt(result=result))
                        for (delivery, _), result in zip(stored, results, strict=True)])

    # The gates are asked once for the chunk (one breaker read and one token take per
    # provider account), not for every message. A chunk of critical or high sends asks the
    # urgent lanes (one priority per chunk; a mixed one counts as bulk).
    urgent = bool(work) and all(gate.is_urgent(d.priority) for d, _, _ in work)
    chunk_gate = gate.ChunkGate(((providers, max(len(message.tokens), 1))
                                 for _, message, providers in work),
                                prepaid_pool, urgent=urgent) if len(work) > 1 else None
    if work:
        # A long-lived pool per worker process: its threads keep their provider sessions
        # (and OAuth tokens) from task to task. A single send goes through it too, so this
        # thread can renew the lease while the call runs.
        pool = sender_pool()
        futures: dict[Future[Attempt], Delivery] = {
            # In the task's context: the sender thread's log lines carry its request id.
            pool.submit(contextvars.copy_context().run, attempt_delivery, message, providers,
                        chunk_gate, prepaid_pool, urgent): delivery
            for delivery, message, providers in work
        }
        # Recorded in this thread as calls return: everything that finished while the previous
        # batch was being written goes in one statement. Under light load that is one row at a
        # time (smallest crash window); under load, fewer round trips.
        pending: set[Future[Attempt]] = set(futures)
        sending = {str(d.id) for d, _, _ in work}  # the rest is recorded already
        keeper.release([i for i in keeper.attempts if i not in sending])
        try:
            while pending:
                done, pending = wait(pending, timeout=keeper.timeout(),
                                     return_when=FIRST_COMPLETED)
                if done:
                    settle([(futures[f], f.result()) for f in done])
                keeper.renew_if_due()
        finally:
            if chunk_gate is not None:
                chunk_gate.flush()

    notifications_refresh_status(notification_ids=report.notification_ids)
    report.publications += webhook_completions_record(notification_ids=report.notification_ids)
    for (priority, countdown, booked_on), items in later.items():
        size = 1 if priority == "critical" else max(int(settings.DISPATCH_CHUNK_SIZE), 1)
        for start in range(0, len(items), size):
            chunk = items[start:start + size]
            # A booked chunk comes back a little after its tokens (never before), spread so
            # that the chunks of many workers do not all arrive in the same instant.
            report.publications += deliveries_publications(
                items=[(i, priority) for i, _ in chunk],
                countdown=countdown + random.uniform(0, 0.25) if booked_on else countdown,
                prepaid={booked_on: sum(cost for _, cost in chunk)} if booked_on else None)
    return report
