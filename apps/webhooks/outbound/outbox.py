"""The outbox writer: called where delivery statuses change, in the same transaction.

One INSERT … SELECT per batch writes one WebhookMessage per (event, subscribed endpoint),
building each payload from the delivery, recipient and notification rows as they are after the
change. Before any of that, one cached read says which clients have enabled endpoints and for
which event types: a batch that concerns nobody costs one cache GET and no query.

Hooks (one line each in apps/notifications):
- dispatch.py `_write_many` is decorated with `records_webhook_events`: the batch's outcome
  statement and its outbox rows commit together (delivery.sent / failed / suppressed).
- dispatch.py calls `webhook_completions_record` after its status refresh.
- receipts.py calls `webhook_receipts_record` inside `delivery_receipts_apply`'s transaction
  (delivery.delivered / bounced / failed, delivery.opened / clicked, notification.completed).

The writers publish nothing: they return the deliver tasks of the messages they wrote
(`Publication`s, apps/core/tasks.py), and their caller publishes them after commit
(`publications_publish_on_commit`; dispatch's and the sweeper's tasks do it for them).

Each message keeps the request id of the send that caused it (`X-Request-Id` on delivery;
docs/operations.md "Logs"). Messages are published after commit; the relay sweeper publishes
whatever that misses (a message is written with a lease). A
message for an endpoint that is backed off (delivery.py) is written parked and not published:
it waits for the endpoint's probe.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from apps.core.correlation import current_request_id
from apps.core.generations import GenerationCache, now_and_after_commit
from apps.core.tasks import Publication

from ..models import WebhookEndpoint
from .events import ENGAGEMENT_DETAIL_KEYS, ENGAGEMENT_EVENTS, NOTIFICATION_COMPLETED, STATUS_EVENTS
from .publish import webhook_messages_publications

logger = logging.getLogger(__name__)

SUBSCRIPTIONS_CACHE_KEY = "webhooks:subscriptions"
_GENERATION_KEY = "webhooks:subscriptions:generation"
ALL_EVENTS = "*"

_ENDPOINT_MATCH = """
    e.disabled_at IS NULL AND e.deleted_at IS NULL
    AND (e.event_types = '[]'::jsonb OR e.event_types ? {event_type})
"""

_MESSAGE_COLUMNS = """
    (id, endpoint_id, event_type, payload, delivery_id, notification_id, dedupe_key, status,
     attempts, next_attempt_at, lease_until, last_status_code, last_error, created_at,
     updated_at, succeeded_at, request_id)
"""

# The request id of the send that caused a message: its notification's `notification.send`
# audit row (written in the accepting request, whichever process later changes the delivery:
# a coalesced dispatch, the relay sweeper, a provider's receipt), else the current one. One
# row per notification, found through the audit_notification index (tests/audit/test_indexes).
_SEND_REQUEST_ID = """
    COALESCE(NULLIF((SELECT a.request_id FROM audit_auditlog AS a
                     WHERE a.notification_id = {notification_id} AND a.action = 'notification.send'
                     LIMIT 1), ''), %(request_id)s)
"""

# Delivery events: the payload is built from the rows as they are now (after the change in
# this transaction). `status` guards against an outcome that did not apply (a stale attempt).
_DELIVERY_EVENTS_SQL = f"""
WITH input AS (
    SELECT * FROM jsonb_to_recordset(%(items)s::jsonb) AS x(
        delivery_id uuid, event_type text, status text, occurred_at text, detail jsonb)
), found AS (
    SELECT e.id AS endpoint_id, e.next_probe_at IS NOT NULL AS parked, x.event_type,
           d.id AS delivery_id, d.notification_id,
           {_SEND_REQUEST_ID.format(notification_id="d.notification_id")} AS request_id,
           jsonb_build_object(
               'type', x.event_type,
               'timestamp', x.occurred_at,
               'data', jsonb_build_object(
                   'delivery_id', d.id,
                   'notification_id', d.notification_id,
                   'recipient', r.external_id,
                   'channel', d.channel,
                   'status', d.status,
                   'error_code', d.error_code,
                   'error_message', d.error_message,
                   'provider', d.provider,
                   'provider_message_id', d.provider_message_id,
                   'metadata', n.metadata,
                   'test', d.is_test
               ) || COALESCE(x.detail, '{{}}'::jsonb)
           ) AS payload
    FROM input AS x
    JOIN notifications_delivery AS d ON d.id = x.delivery_id
    JOIN recipients_recipient AS r ON r.id = d.recipient_id
    JOIN notifications_notification AS n ON n.id = d.notification_id
    JOIN webhooks_webhookendpoint AS e ON e.client_id = d.client_id
    WHERE d.client_id = ANY(%(clients)s::uuid[])
      AND (x.status = '' OR d.status = x.status)
      AND {_ENDPOINT_MATCH.format(event_type="x.event_type")}
)
INSERT INTO webhooks_webhookmessage {_MESSAGE_COLUMNS}
SELECT gen_random_uuid(), endpoint_id, event_type, payload, delivery_id, notification_id, NULL,
       'pending', 0, %(now)s, CASE WHEN parked THEN NULL ELSE %(lease_until)s END, NULL, '',
       %(now)s, %(now)s, NULL, request_id
FROM found
RETURNING id, endpoint_id, lease_until IS NULL
"""

# notification.completed: once per (endpoint, notification, final status, completion time),
# however many batches see the notification final. Counts are computed for new ones only.
_COMPLETIONS_SQL = f"""
WITH final AS (
    SELECT n.id, n.client_id, n.status, n.completed_at, n.recipient_count, n.channels,
           n.metadata, n.is_test,
           'notification.completed:' || n.id::text || ':' || n.status || ':'
               || extract(epoch FROM n.completed_at)::text AS dedupe_key
    FROM notifications_notification AS n
    WHERE n.id = ANY(%(ids)s::uuid[])
      AND n.client_id = ANY(%(clients)s::uuid[])
      AND n.status IN ('completed', 'partially_failed', 'failed', 'cancelled')
), found AS (
    SELECT e.id AS endpoint_id, e.next_probe_at IS NOT NULL AS parked, f.*
    FROM final AS f
    JOIN webhooks_webhookendpoint AS e ON e.client_id = f.client_id
    WHERE {_ENDPOINT_MATCH.format(event_type="'notification.completed'")}
      AND NOT EXISTS (SELECT 1 FROM webhooks_webhookmessage AS m
                      WHERE m.endpoint_id = e.id AND m.dedupe_key = f.dedupe_key)
)
INSERT INTO webhooks_webhookmessage {_MESSAGE_COLUMNS}
SELECT gen_random_uuid(), f.endpoint_id, 'notification.completed',
       jsonb_build_object(
           'type', 'notification.completed',
           'timestamp', to_jsonb(COALESCE(f.completed_at, %(now)s)),
           'data', jsonb_build_object(
               'notification_id', f.id,
               'status', f.status,
               'completed_at', to_jsonb(f.completed_at),
               'recipient_count', f.recipient_count,
               'channels', f.channels,
               'counts', (SELECT COALESCE(jsonb_object_agg(c.status, c.n), '{{}}'::jsonb)
                          FROM (SELECT status, count(*) AS n FROM notifications_delivery
                                WHERE notification_id = f.id GROUP BY status) AS c),
               'metadata', f.metadata,
               'test', f.is_test
           )
       ),
       NULL, f.id, f.dedupe_key, 'pending', 0, %(now)s,
       CASE WHEN f.parked THEN NULL ELSE %(lease_until)s END, NULL, '', %(now)s, %(now)s, NULL,
       {_SEND_REQUEST_ID.format(notification_id="f.id")}
FROM found AS f
ON CONFLICT DO NOTHING
RETURNING id, endpoint_id, lease_until IS NULL
"""


# --- Who listens (cached) ---------------------------------------------------------------------

def _load_subscriptions() -> dict[str, list[str]]:
    by_client: dict[str, set[str]] = {}
    rows = WebhookEndpoint.objects.filter(disabled_at__isnull=True, deleted_at__isnull=True)
    for client_id, types in rows.values_list("client_id", "event_types"):
        by_client.setdefault(str(client_id), set()).update(types or [ALL_EVENTS])
    return {client: sorted(types) for client, types in by_client.items()}


# Inside `subscriptions_read_once()`: the subscriptions read by its first caller.
_scoped: contextvars.ContextVar[dict[str, list[str]] | None] = contextvars.ContextVar(
    "webhook_subscriptions", default=None)
_in_scope: contextvars.ContextVar[bool] = contextvars.ContextVar("webhook_subscriptions_scope",
                                                                 default=False)


@contextlib.contextmanager
def subscriptions_read_once() -> Iterator[None]:
    """Within this block (one dispatch chunk) the subscriptions are read once, by the first
    caller, instead of once per outcome batch. A change committed meanwhile applies from the
    next chunk on, as it would with a batch that started just before it."""
    token, scope = _scoped.set(None), _in_scope.set(True)
    try:
        yield
    finally:
        _scoped.reset(token)
        _in_scope.reset(scope)


def endpoint_subscriptions() -> dict[str, list[str]]:
    """client id → the event types its enabled endpoints receive (`*`: all). One query,
    cached for WEBHOOKS_SUBSCRIPTIONS_CACHE_SECONDS (0: not cached); read once per
    `subscriptions_read_once()` block."""
    if not _in_scope.get():
        return _read_subscriptions()
    found = _scoped.get()
    if found is None:
        found = _read_subscriptions()
        _scoped.set(found)
    return found


def _read_subscriptions() -> dict[str, list[str]]:
    """`endpoint_subscriptions()` outside a once-per-chunk block.

    The cache key carries a generation that every endpoint change replaces after commit: a
    reader that loaded the rows before the commit stores them under the old generation, which
    nobody reads any more, so a stale answer cannot outlive the change."""
    seconds = settings.WEBHOOKS_SUBSCRIPTIONS_CACHE_SECONDS
    if seconds <= 0:
        return _load_subscriptions()
    try:
        generation = _generation()
        if generation is None:
            cache.add(_GENERATION_KEY, uuid.uuid4().hex, None)
            generation = cache.get(_GENERATION_KEY)
        # What this process read under the current generation, while it is younger than the
        # shared entry's lifetime: the generation read above is the only round trip then.
        memo = _process_memo.get("subscriptions", generation)
        if memo is not None:
            return dict(memo)
        key = f"{SUBSCRIPTIONS_CACHE_KEY}:{generation}"
        cached = cache.get(key)
    except RedisError:
        logger.warning("webhook subscriptions cache unavailable; reading the database")
        return _load_subscriptions()
    if cached is not None:
        subscriptions = dict(cached)
    else:
        subscriptions = _load_subscriptions()
        try:
            cache.set(key, subscriptions, seconds)
        except RedisError:
            logger.warning("webhook subscriptions cache unavailable; not cached")
    _process_memo.put("subscriptions", generation, subscriptions, ttl=seconds)
    return dict(subscriptions)


# The subscriptions as this process last read them, under their generation.
_process_memo: GenerationCache[str, dict[str, list[str]]] = GenerationCache(max_entries=1)


def _generation() -> Any:
    """The cache generation, read through one redis client kept per cache backend object
    (Django builds a new client, with its table of response callbacks, for every call)."""
    backend = getattr(cache, "_cache", None)
    if backend is None or not hasattr(backend, "get_client"):
        return cache.get(_GENERATION_KEY)
    client = backend.__dict__.get("_notifyhub_client")
    if client is None:
        client = backend._notifyhub_client = backend.get_client(None, write=True)
    value = client.get(cache.make_and_validate_key(_GENERATION_KEY))
    return None if value is None else backend._serializer.loads(value)


def subscriptions_changed() -> None:
    """Starts a new cache generation now and again after commit (so no process keeps
    serving the state from before the change)."""

    def bump() -> None:
        try:
            cache.set(_GENERATION_KEY, uuid.uuid4().hex, None)
        except RedisError:
            logger.warning("could not renew the webhook subscriptions cache; it expires by itself")

    now_and_after_commit(bump)


def _clients_for(event_types: set[str], subscriptions: dict[str, list[str]]) -> list[str]:
    return [client for client, types in subscriptions.items()
            if ALL_EVENTS in types or event_types.intersection(types)]


# --- Writing ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeliveryEventItem:
    """One event about one delivery. `status`: write it only if the delivery is (still) in
    this status; empty for events that are not status changes (engagement)."""

    delivery_id: str
    event_type: str
    occurred_at: datetime
    status: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def _lease_until(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.WEBHOOKS_REQUEUE_AFTER_SECONDS)


def webhook_events_record(
    *, items: Sequence[DeliveryEventItem], now: datetime | None = None,
    subscriptions: dict[str, list[str]] | None = None,
) -> list[Publication]:
    """Writes the outbox rows for these delivery events (one statement). Returns their deliver
    tasks, for the caller to publish after commit."""
    if not items:
        return []
    if subscriptions is None:
        subscriptions = endpoint_subscriptions()
    if not subscriptions:
        return []
    clients = _clients_for({i.event_type for i in items}, subscriptions)
    if not clients:
        return []
    now = now or timezone.now()
    payload = [
        {"delivery_id": i.delivery_id, "event_type": i.event_type, "status": i.status,
         "occurred_at": i.occurred_at.isoformat(), "detail": i.detail}
        for i in items
    ]
    with connection.cursor() as cursor:
        cursor.execute(_DELIVERY_EVENTS_SQL, {"items": json.dumps(payload, default=str),
                                              "clients": clients, "now": now,
                                              "lease_until": _lease_until(now),
                                              "request_id": current_request_id()})
        rows = cursor.fetchall()
    return _unparked_publications(rows)


def webhook_completions_record(
    *, notification_ids: Iterable[object], now: datetime | None = None,
    subscriptions: dict[str, list[str]] | None = None,
) -> list[Publication]:
    """notification.completed for those of these notifications that are now final (call it
    after their status refresh). Written once per final status; safe to call again. Returns
    the deliver tasks, for the caller to publish after commit."""
    ids = sorted({str(i) for i in notification_ids})
    if not ids:
        return []
    if subscriptions is None:
        subscriptions = endpoint_subscriptions()
    clients = _clients_for({NOTIFICATION_COMPLETED}, subscriptions) if subscriptions else []
    if not clients:
        return []
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_COMPLETIONS_SQL, {"ids": ids, "clients": clients, "now": now,
                                          "lease_until": _lease_until(now),
                                          "request_id": current_request_id()})
        rows = cursor.fetchall()
    return _unparked_publications(rows)


def _unparked_publications(rows: Sequence[tuple[Any, Any, bool]]) -> list[Publication]:
    """The deliver tasks of the new messages, except those written parked (their endpoint is
    backed off: they wait for its probe, with no task each)."""
    return webhook_messages_publications(
        items=[(str(message_id), str(endpoint_id)) for message_id, endpoint_id, parked in rows
               if not parked])


# --- The hooks --------------------------------------------------------------------------------

Rows = Sequence[dict[str, Any]]
WriteFn = TypeVar("WriteFn", bound=Callable[[Rows, datetime], list[Publication]])


def outcome_items(rows: Rows, now: datetime) -> list[DeliveryEventItem]:
    """The events in a batch of dispatch outcome rows (see dispatch._row)."""
    return [
        DeliveryEventItem(delivery_id=str(row["id"]), event_type=STATUS_EVENTS[row["status"]],
                          occurred_at=now, status=row["status"])
        for row in rows
        if row.get("status") in STATUS_EVENTS
    ]


def records_webhook_events(write: WriteFn) -> WriteFn:
    """Decorates dispatch's batch writer `(rows, now)`: the outbox rows for the batch's status
    changes commit with it, and their deliver tasks are added to what the writer returns.
    With nobody subscribed it is the plain write."""

    @functools.wraps(write)
    def wrapper(rows: Rows, now: datetime) -> list[Publication]:
        items = outcome_items(rows, now)
        subscriptions = endpoint_subscriptions() if items else {}
        if not subscriptions:
            return write(rows, now)
        with transaction.atomic():
            publications = write(rows, now)
            return [*publications,
                    *webhook_events_record(items=items, now=now, subscriptions=subscriptions)]

    return wrapper  # type: ignore[return-value]


def webhook_receipts_record(*, deliveries: Iterable[Any],
                            events: Iterable[Any]) -> list[Publication]:
    """Called inside `delivery_receipts_apply`'s transaction, after its status refresh, with
    the deliveries whose status changed and the receipt events it stored: their status events,
    engagement events and the completions they caused. Returns the deliver tasks, for the
    caller to publish after commit."""
    deliveries = list(deliveries)
    events = list(events)
    subscriptions = endpoint_subscriptions()
    if not subscriptions:
        return []
    occurred: dict[tuple[str, str], datetime] = {}
    items: list[DeliveryEventItem] = []
    for event in events:
        delivery_id = str(event.delivery_id)
        occurred[(delivery_id, event.status)] = event.occurred_at
        if event.event in ENGAGEMENT_EVENTS:
            detail = {k: event.detail[k] for k in ENGAGEMENT_DETAIL_KEYS if k in (event.detail or {})}
            items.append(DeliveryEventItem(delivery_id=delivery_id,
                                           event_type=ENGAGEMENT_EVENTS[event.event],
                                           occurred_at=event.occurred_at, detail=detail))
    now = timezone.now()
    for delivery in deliveries:
        # `sent` is dispatch's to report; receipts report what the provider saw after it.
        if delivery.status in STATUS_EVENTS and delivery.status != "sent":
            delivery_id = str(delivery.id)
            items.append(DeliveryEventItem(
                delivery_id=delivery_id, event_type=STATUS_EVENTS[delivery.status],
                occurred_at=occurred.get((delivery_id, delivery.status), now),
                status=delivery.status))
    written = webhook_events_record(items=items, now=now, subscriptions=subscriptions)
    return written + webhook_completions_record(
        notification_ids={d.notification_id for d in deliveries}, now=now,
        subscriptions=subscriptions)

