"""Provider receipts (delivered, bounced, …) applied to deliveries: idempotent and monotonic."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.db import OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from psycopg import errors as pg_errors

from apps.core import tracing
from apps.core.db.plans import planned_per_run
from apps.core.db.rows import model_columns
from apps.core.logging import redact_pii, request_id_var
from apps.core.tasks import publications_publish_on_commit
from apps.webhooks.outbound.outbox import webhook_receipts_record

from . import instrumentation
from .models import STATUS_RANK, Delivery, DeliveryEvent, DeliveryStatus
from .status import notifications_refresh_status
from .suppressions import SuppressionItem, suppressions_add

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProviderEvent:
    """A provider's receipt in NotifyHub's words (built by each inbound webhook's parser)."""

    provider: str
    event: str  # processed, delivered, bounced, dropped, deferred, opened, clicked, …
    occurred_at: datetime
    status: DeliveryStatus | None = None  # the delivery status it implies, if any
    delivery_id: str = ""
    provider_message_id: str = ""
    provider_event_id: str = ""
    error_code: str = ""
    error_message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    suppress_address: bool = False  # the provider says this address can never receive
    # The request id of the send, as the provider echoed it back (empty: it did not).
    request_id: str = ""


@dataclass
class ReceiptReport:
    received: int = 0
    applied: int = 0
    unknown: int = 0
    duplicates: int = 0


def _valid_uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


# A batch that loses a lock race (deadlock victim, serialization failure) is tried again this
# many times in all, after a short jittered pause; only then does the error reach the caller.
RECEIPT_ATTEMPTS = 5
RETRY_PAUSE_SECONDS = 0.05

# Statuses before `sent`: a receipt for a delivery still in one of them proves a send whose
# outcome write was lost (the worker died, or its write was rolled back).
NOT_YET_SENT = frozenset({DeliveryStatus.PENDING, DeliveryStatus.QUEUED, DeliveryStatus.RETRYING,
                          DeliveryStatus.SENDING})

# What applying a receipt reads of a delivery (never the encrypted address itself).
_FIELDS = ("id", "notification_id", "client_id", "channel", "status", "provider",
           "provider_message_id", "is_test", "sent_at", "delivered_at", "completed_at",
           "lease_until", "due_at", "error_code", "error_message")


def lost_lock_race(exc: BaseException) -> bool:
    """True for the errors PostgreSQL raises on a transaction it chose to abort so another
    could go on (deadlock victim, serialization failure): trying again is the cure."""
    cause = exc.__cause__
    return isinstance(cause, pg_errors.DeadlockDetected | pg_errors.SerializationFailure)


def delivery_receipts_apply(*, events: list[ProviderEvent], test_only: bool = False) -> ReceiptReport:
    """Applies a verified batch of receipts. `test_only` (receipts from the test-mode sandbox,
    verified with the test-mode credentials) restricts them to test deliveries: anything else
    they name counts as unknown.

    One transaction; a transaction that loses a lock race is rolled back and tried again (up to
    RECEIPT_ATTEMPTS in all) when this call owns it (not inside an outer atomic block).

    When the receipts carry the request id of their send (echoed back by the provider), it is
    the request id of this work: its log lines, and the client webhooks it writes, carry it
    (the callback's own request id is logged once next to it)."""
    sent_by = {e.request_id for e in events if e.request_id}
    token = None
    if len(sent_by) == 1:
        (request_id,) = sent_by
        logger.info("receipts of request %s", request_id)
        token = request_id_var.set(request_id)
    try:
        # Tracing on: the span of this batch links to the spans of the sends it reports on.
        with tracing.linked_span("delivery_receipts_apply",
                                 _send_traceparents(events) if tracing.enabled() else (),
                                 {"notifyhub.receipts": len(events)}):
            return _apply_in_transaction(events=events, test_only=test_only)
    finally:
        if token is not None:
            request_id_var.reset(token)


# At most this many sends are linked from one receipt batch's span.
MAX_SPAN_LINKS = 64


def _send_traceparents(events: list[ProviderEvent]) -> list[str]:
    """The `traceparent`s dispatch stored with the sends these receipts report on (read only
    when tracing is on: one query, by delivery id or the provider's message id)."""
    query = Q(delivery_id__in={i for e in events if (i := _valid_uuid(e.delivery_id))})
    by_provider: dict[str, set[str]] = {}
    for e in events:
        if e.provider_message_id:
            by_provider.setdefault(e.provider, set()).add(e.provider_message_id)
    for provider, message_ids in by_provider.items():
        query |= Q(delivery__provider=provider, delivery__provider_message_id__in=message_ids)
    return [str(t) for t in DeliveryEvent.objects.filter(query, event="sent")
            .filter(detail__has_key="traceparent")
            .values_list("detail__traceparent", flat=True)[:MAX_SPAN_LINKS]]


def _apply_in_transaction(*, events: list[ProviderEvent], test_only: bool) -> ReceiptReport:
    # A receipt batch's statements join the batch to the deliveries and events: each is planned
    # for this batch and the tables' current size, never from a cached generic plan
    # (apps/core/db/plans.py).
    with planned_per_run():
        return _apply_attempts(events=events, test_only=test_only)


def _apply_attempts(*, events: list[ProviderEvent], test_only: bool) -> ReceiptReport:
    if connection.in_atomic_block:
        return _apply(events=events, test_only=test_only)
    for attempt in range(1, RECEIPT_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                return _apply(events=events, test_only=test_only)
        except OperationalError as exc:
            if attempt == RECEIPT_ATTEMPTS or not lost_lock_race(exc):
                raise
            logger.warning("receipt batch lost a lock race (%s); trying again (%d/%d)",
                           type(exc.__cause__).__name__, attempt, RECEIPT_ATTEMPTS)
            time.sleep(RETRY_PAUSE_SECONDS * attempt * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")  # pragma: no cover


@functools.cache
def _candidates_sql(providers: int, test_only: bool) -> str:
    """The candidate read for a batch naming message ids of `providers` providers: built once
    per process (the ORM compiled the same query for every callback, half of a callback's
    CPU). `<> ''` is the partial index's condition, however the statement is planned."""
    by_message = " OR ".join(["(d.provider = %s AND d.provider_message_id <> ''"
                              " AND d.provider_message_id = ANY(%s::varchar[]))"] * providers)
    columns = model_columns(Delivery, "d", frozenset(_FIELDS))
    return (f"SELECT {columns.sql}, d.address = '' FROM notifications_delivery d"
            f" WHERE (d.id = ANY(%s::uuid[]){' OR ' + by_message if providers else ''})"
            f"{' AND d.is_test' if test_only else ''} ORDER BY d.id FOR NO KEY UPDATE OF d")


def _candidates(ids: set[str], by_message: dict[str, set[str]], *, test_only: bool
                ) -> list[Delivery]:
    """The deliveries the batch names (by our id or the provider's message id), locked, with
    `erased` set."""
    params: list[Any] = [sorted(ids)]
    for provider, message_ids in sorted(by_message.items()):
        params += [provider, sorted(message_ids)]
    columns = model_columns(Delivery, "d", frozenset(_FIELDS))
    out = []
    with connection.cursor() as cursor:
        cursor.execute(_candidates_sql(len(by_message), test_only), params)
        for row in cursor.fetchall():
            delivery = columns.instance(row[:-1])
            delivery.erased = row[-1]  # type: ignore[attr-defined]
            out.append(delivery)
    return out


def _stored_event_ids(providers: list[str], event_ids: list[str]) -> set[str]:
    """Which of these provider event ids are stored already (the unique index's condition
    repeated, as in `_candidates_sql`)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT provider_event_id FROM notifications_deliveryevent"
            " WHERE provider = ANY(%s::varchar[]) AND provider_event_id <> ''"
            " AND provider_event_id = ANY(%s::varchar[])", [providers, event_ids])
        return {row[0] for row in cursor.fetchall()}


def _apply(*, events: list[ProviderEvent], test_only: bool) -> ReceiptReport:
    report = ReceiptReport(received=len(events))
    if not events:
        return report
    # PostgreSQL stores no NUL character (a text or jsonb value with one is an error, a 500):
    # a provider's text never carries a meaningful one.
    events = [_without_nul(e) for e in events]
    # Bounce texts may quote the address ("550 <jane@example.com>: no such user").
    events = [replace(e, error_message=redact_pii(e.error_message)) if e.error_message else e
              for e in events]
    ids = {i for e in events if (i := _valid_uuid(e.delivery_id))}
    by_message: dict[str, set[str]] = {}
    for e in events:
        if e.provider_message_id:
            by_message.setdefault(e.provider, set()).add(e.provider_message_id)
    # Locked in id order (as dispatch's outcome write does), FOR NO KEY UPDATE (event rows
    # inserted meanwhile by a worker only need a key-share lock, which this does not block).
    # The (encrypted) address is neither read nor decrypted: whether it is blank (the
    # recipient was erased) comes with the row; the address itself is read only for the few
    # receipts that suppress it.
    deliveries = {str(d.id): d for d in _candidates(ids, by_message, test_only=test_only)}
    by_msg_id = {(d.provider, d.provider_message_id): d for d in deliveries.values()}

    # Receipts already stored (same provider event id) are skipped: the same callback twice
    # changes nothing.
    seen_ids = sorted({e.provider_event_id for e in events if e.provider_event_id})
    seen = _stored_event_ids(sorted({e.provider for e in events}), seen_ids) if seen_ids else set()

    now = timezone.now()
    new_events: list[DeliveryEvent] = []
    changed: dict[str, Delivery] = {}
    recovered: set[str] = set()  # deliveries whose send only this batch's receipts recorded
    suppress: list[tuple[Delivery, ProviderEvent]] = []
    for e in sorted(events, key=lambda ev: ev.occurred_at):
        delivery = deliveries.get(_valid_uuid(e.delivery_id) or "") or by_msg_id.get(
            (e.provider, e.provider_message_id)
        )
        if delivery is None:
            report.unknown += 1
            logger.info("receipt for unknown message from %s (event %s) ignored", e.provider, e.event)
            continue
        if e.provider_event_id and e.provider_event_id in seen:
            report.duplicates += 1
            continue
        if e.provider_event_id:
            seen.add(e.provider_event_id)
        if delivery.erased:  # type: ignore[attr-defined]
            # The recipient was erased (every accepted delivery has an address until then): the
            # status still counts, the provider's text and details (which may echo the address,
            # a click's URL) are not kept.
            e = dataclasses.replace(e, error_message="", detail={})
        if delivery.status in NOT_YET_SENT:
            # Any receipt proves the provider took the message, so the send whose record was
            # lost is recorded first (provider, message id, sent_at and a `sent` event): the
            # row leaves the claimable and in-flight statuses and is never sent again.
            new_events.append(_record_send(delivery, e, now))
            changed[str(delivery.id)] = delivery
            recovered.add(str(delivery.id))
        if e.status is not None and STATUS_RANK[e.status] > STATUS_RANK[DeliveryStatus(delivery.status)]:
            delivery.status = e.status
            if e.status == DeliveryStatus.DELIVERED:
                delivery.delivered_at = e.occurred_at
            if e.status in (DeliveryStatus.DELIVERED, DeliveryStatus.BOUNCED, DeliveryStatus.FAILED):
                delivery.completed_at = now
                delivery.lease_until = None
                delivery.due_at = None
            if e.error_code or e.error_message:
                delivery.error_code = e.error_code
                delivery.error_message = e.error_message
            changed[str(delivery.id)] = delivery
            report.applied += 1
            if e.suppress_address and not delivery.is_test:  # simulated: never suppresses
                suppress.append((delivery, e))
        elif e.status is not None and STATUS_RANK[e.status] < STATUS_RANK[DeliveryStatus(delivery.status)]:
            # A late intermediate (the provider's `sent`/`submitted`/`processed` arriving after
            # `delivered`, as callbacks overtake each other): one rule for every provider. It
            # never moves the delivery back; the timeline keeps it, with the delivery's status
            # (not the earlier one it reports) and marked `late`.
            e = dataclasses.replace(e, detail={**e.detail, "late": True,
                                               "reported_status": str(e.status)})
        new_events.append(
            DeliveryEvent(
                delivery=delivery,
                status=delivery.status,
                event=e.event,
                provider=e.provider,
                provider_message_id=e.provider_message_id or delivery.provider_message_id,
                provider_event_id=e.provider_event_id,
                error_code=e.error_code,
                error_message=e.error_message,
                # The request id of the send, as the provider echoed it (timeline, admin).
                detail={**e.detail, "request_id": e.request_id} if e.request_id else e.detail,
                occurred_at=e.occurred_at,
            )
        )
    if changed:
        _update_deliveries(list(changed.values()), now)
        observed = list(changed.values())
        transaction.on_commit(lambda: instrumentation.observe_receipts(observed))
        if recovered:
            logger.warning("receipts recorded %d send(s) whose outcome the worker had not "
                           "recorded", len(recovered))
    _insert_events(new_events, now)
    if suppress:
        addresses = dict(Delivery.objects.filter(id__in=[d.id for d, _ in suppress])
                         .values_list("id", "address"))
        suppressions_add(items=[
            SuppressionItem(client_id=d.client_id, channel=d.channel, address=addresses[d.id],
                            reason=e.error_code or e.event, detail=e.error_message,
                            delivery_id=d.id)
            for d, e in suppress
        ])
    notifications_refresh_status(
        notification_ids={d.notification_id for d in changed.values()}
    )
    publications_publish_on_commit(webhook_receipts_record(deliveries=changed.values(),
                                                           events=new_events))
    return report


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _without_nul(e: ProviderEvent) -> ProviderEvent:
    texts = (e.event, e.delivery_id, e.provider_message_id, e.provider_event_id, e.error_code,
             e.error_message)
    if not any("\x00" in t for t in texts) and "\\u0000" not in json.dumps(e.detail, default=str):
        return e
    return replace(e, event=_clean(e.event), delivery_id=_clean(e.delivery_id),
                   provider_message_id=_clean(e.provider_message_id),
                   provider_event_id=_clean(e.provider_event_id), error_code=_clean(e.error_code),
                   error_message=_clean(e.error_message), detail=_clean(e.detail))


def _record_send(delivery: Delivery, e: ProviderEvent, now: datetime) -> DeliveryEvent:
    """Moves a delivery whose send was never recorded to `sent`, as its receipt proves, and
    returns the `sent` event to store."""
    delivery.status = DeliveryStatus.SENT
    delivery.provider = e.provider
    if e.provider_message_id and not delivery.provider_message_id:
        delivery.provider_message_id = e.provider_message_id
    delivery.sent_at = delivery.sent_at or min(e.occurred_at, now)
    delivery.lease_until = None
    delivery.due_at = None
    delivery.error_code = ""
    delivery.error_message = ""
    return DeliveryEvent(
        delivery=delivery, status=DeliveryStatus.SENT, event="sent", provider=e.provider,
        provider_message_id=delivery.provider_message_id, provider_event_id="",
        detail={"recorded_from": "receipt", "receipt": e.event},
        occurred_at=delivery.sent_at,
    )


_UPDATE_SQL = """
UPDATE notifications_delivery AS d
SET status = x.status, delivered_at = x.delivered_at, completed_at = x.completed_at,
    lease_until = x.lease_until, due_at = x.due_at, error_code = x.error_code,
    error_message = x.error_message, provider = x.provider,
    provider_message_id = x.provider_message_id, sent_at = x.sent_at, updated_at = %(now)s
FROM jsonb_to_recordset(%(rows)s::jsonb) AS x(
    id uuid, status text, delivered_at timestamptz, completed_at timestamptz,
    lease_until timestamptz, due_at timestamptz, error_code text, error_message text,
    provider text, provider_message_id text, sent_at timestamptz)
WHERE d.id = x.id
"""


_EVENTS_SQL = """
INSERT INTO notifications_deliveryevent
    (delivery_id, status, event, provider, provider_message_id, provider_event_id,
     error_code, error_message, detail, occurred_at, created_at)
SELECT x.delivery_id, x.status, x.event, x.provider, x.provider_message_id,
       x.provider_event_id, x.error_code, x.error_message, COALESCE(x.detail, '{}'::jsonb),
       x.occurred_at, %(now)s
FROM jsonb_to_recordset(%(rows)s::jsonb) AS x(
    delivery_id uuid, status text, event text, provider text, provider_message_id text,
    provider_event_id text, error_code text, error_message text, detail jsonb,
    occurred_at timestamptz)
ON CONFLICT DO NOTHING
"""


def _insert_events(events: list[DeliveryEvent], now: datetime) -> None:
    """The batch's events in one statement, in their order (bulk_create builds every value through
    the ORM, which costs more CPU than the receipts themselves); a provider event id already
    stored is skipped (the unique constraint), as `ignore_conflicts` did."""
    if not events:
        return
    payload = [
        {"delivery_id": str(e.delivery_id), "status": e.status, "event": e.event,
         "provider": e.provider, "provider_message_id": e.provider_message_id,
         "provider_event_id": e.provider_event_id, "error_code": e.error_code,
         "error_message": e.error_message, "detail": e.detail,
         "occurred_at": e.occurred_at.isoformat()}
        for e in events
    ]
    with connection.cursor() as cursor:
        cursor.execute(_EVENTS_SQL, {"rows": json.dumps(payload, default=str), "now": now})


def _update_deliveries(rows: list[Delivery], now: datetime) -> None:
    """One UPDATE for the batch (Django's bulk_update builds a CASE per column in Python,
    which costs more CPU than the receipts themselves)."""
    payload = [
        {"id": str(d.id), "status": d.status,
         "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None,
         "completed_at": d.completed_at.isoformat() if d.completed_at else None,
         "lease_until": d.lease_until.isoformat() if d.lease_until else None,
         "due_at": d.due_at.isoformat() if d.due_at else None,
         "error_code": d.error_code, "error_message": d.error_message,
         "provider": d.provider, "provider_message_id": d.provider_message_id,
         "sent_at": d.sent_at.isoformat() if d.sent_at else None}
        for d in rows
    ]
    with connection.cursor() as cursor:
        cursor.execute(_UPDATE_SQL, {"rows": json.dumps(payload), "now": now})
