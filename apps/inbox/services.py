"""Writes of the inbox (docs/inbox.md): storing a dispatch chunk's messages, engagement
(seen, read, unread, archive, read-all) and retention.

Storing is one statement per chunk (counters upserted, messages inserted with their seqs);
engagement is one UPDATE per request whatever the number of messages, plus one INSERT of
timeline events and one of webhook outbox rows. Every write publishes its live events after
commit (live.py)."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.webhooks.outbound.events import ENGAGEMENT_EVENTS
from apps.webhooks.outbound.outbox import DeliveryEventItem, webhook_events_record

from .live import message_event, publish_counts, publish_inbox_events
from .models import InboxMessage
from .tokens import InboxPrincipal

logger = logging.getLogger(__name__)

# One statement for a chunk: the recipients' counters are bumped by how many messages each
# gets (rows locked in recipient order; the lock is held to commit, so seqs follow commit
# order), the messages inserted with consecutive seqs. A delivery already stored (its outcome
# was lost with a worker and it was claimed again) is skipped.
_STORE_SQL = """
WITH input AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS x(
        ord int, delivery_id uuid, client_id uuid, recipient_id uuid, category text,
        title text, body text, action_url text, data jsonb)
), fresh AS (
    SELECT i.* FROM input AS i
    WHERE NOT EXISTS (SELECT 1 FROM inbox_inboxmessage AS m WHERE m.delivery_id = i.delivery_id)
), wanted AS (
    SELECT recipient_id, count(*) AS n FROM fresh GROUP BY recipient_id
), counters AS (
    INSERT INTO inbox_inboxcounter AS c (recipient_id, last_seq)
    SELECT recipient_id, n FROM wanted ORDER BY recipient_id
    ON CONFLICT (recipient_id) DO UPDATE SET last_seq = c.last_seq + EXCLUDED.last_seq
    RETURNING c.recipient_id, c.last_seq
), numbered AS (
    SELECT f.*, c.last_seq - w.n
                + row_number() OVER (PARTITION BY f.recipient_id ORDER BY f.ord) AS seq
    FROM fresh AS f JOIN wanted AS w USING (recipient_id) JOIN counters AS c USING (recipient_id)
)
INSERT INTO inbox_inboxmessage
    (id, client_id, recipient_id, delivery_id, seq, category, title, body, action_url, data,
     created_at, expires_at)
SELECT gen_random_uuid(), client_id, recipient_id, delivery_id, seq, category, title, body,
       action_url, COALESCE(data, '{}'::jsonb), %(now)s, %(expires_at)s
FROM numbered ORDER BY recipient_id, seq
ON CONFLICT (delivery_id) DO NOTHING
RETURNING id, client_id, recipient_id, delivery_id, seq, category, title, body, action_url,
          data, created_at, expires_at
"""

_STORED_SQL = "SELECT delivery_id, id FROM inbox_inboxmessage WHERE delivery_id = ANY(%s::uuid[])"


def _message_from_row(row: Sequence[Any]) -> InboxMessage:
    (id_, client_id, recipient_id, delivery_id, seq, category, title, body, action_url, data,
     created_at, expires_at) = row
    return InboxMessage(
        id=id_, client_id=client_id, recipient_id=recipient_id, delivery_id=delivery_id, seq=seq,
        category=category, title=title, body=body, action_url=action_url,
        data=json.loads(data) if isinstance(data, str) else data, created_at=created_at,
        expires_at=expires_at)


def inbox_messages_store(*, items: Sequence[dict[str, Any]], now: datetime | None = None,
                         ) -> dict[str, str]:
    """Stores one inbox message per item (delivery_id, client_id, recipient_id, category,
    title, body, action_url, data) in one statement, and publishes each new message and its
    inbox's counts after commit. Returns delivery_id → message id for every item stored (now
    or before). Call it in the transaction that records the deliveries `delivered`."""
    if not items:
        return {}
    now = now or timezone.now()
    rows = [{**item, "ord": n} for n, item in enumerate(items)]
    params: dict[str, Any] = {"rows": json.dumps(rows, default=str), "now": now,
              "expires_at": now + timedelta(days=settings.INBOX_RETENTION_DAYS)}
    with connection.cursor() as cursor:
        cursor.execute(_STORE_SQL, params)
        messages = [_message_from_row(r) for r in cursor.fetchall()]
        stored = {str(m.delivery_id): str(m.id) for m in messages}
        missing = [str(i["delivery_id"]) for i in items if str(i["delivery_id"]) not in stored]
        if missing:
            cursor.execute(_STORED_SQL, [missing])
            stored.update({str(d): str(m) for d, m in cursor.fetchall()})
    messages.sort(key=lambda m: (str(m.recipient_id), m.seq))
    publish_inbox_events((m.client_id, m.recipient_id, message_event(m)) for m in messages)
    by_client: dict[str, set[str]] = defaultdict(set)
    for m in messages:
        by_client[str(m.client_id)].add(str(m.recipient_id))
    for client_id, recipients in by_client.items():
        publish_counts(client_id=client_id, recipient_pks=recipients)
    return stored


# --- Engagement -------------------------------------------------------------------------------

class Action:
    SEEN = "seen"
    READ = "read"
    UNREAD = "unread"
    ARCHIVE = "archive"
    CHOICES = (SEEN, READ, UNREAD, ARCHIVE)


# What each action sets, and the timeline events it records for the messages it changed.
_SET = {
    Action.SEEN: "seen_at = COALESCE(m.seen_at, %(now)s)",
    Action.READ: "seen_at = COALESCE(m.seen_at, %(now)s), read_at = COALESCE(m.read_at, %(now)s)",
    Action.UNREAD: "read_at = NULL",
    Action.ARCHIVE: ("seen_at = COALESCE(m.seen_at, %(now)s), "
                     "archived_at = COALESCE(m.archived_at, %(now)s)"),
}

_MARK_SQL = """
WITH target AS (
    SELECT id, seen_at IS NULL AS was_unseen, read_at IS NULL AS was_unread,
           archived_at IS NULL AS was_active
    FROM inbox_inboxmessage
    WHERE client_id = %(client_id)s AND recipient_id = %(recipient_id)s AND {where}
    ORDER BY id
    FOR NO KEY UPDATE
)
UPDATE inbox_inboxmessage AS m SET {set}
FROM target AS t WHERE m.id = t.id
RETURNING m.id, m.delivery_id, t.was_unseen, t.was_unread, t.was_active, m.seen_at, m.read_at,
          m.archived_at
"""

# Engagement events on the delivery timeline (provider `in_app`, status unchanged).
_EVENTS_SQL = """
INSERT INTO notifications_deliveryevent
    (delivery_id, status, event, provider, provider_message_id, provider_event_id,
     error_code, error_message, detail, occurred_at, created_at)
SELECT x.delivery_id, d.status, x.event, 'in_app', x.message_id, '', '', '', '{}'::jsonb,
       %(now)s, %(now)s
FROM jsonb_to_recordset(%(rows)s::jsonb) AS x(ord int, delivery_id uuid, event text,
                                               message_id text)
JOIN notifications_delivery AS d ON d.id = x.delivery_id
ORDER BY x.ord  -- the timeline's order is insertion order: seen before read
"""


@dataclass(frozen=True)
class MarkResult:
    changed: int  # messages whose state changed
    messages: list[str]  # ids of the messages the request matched


def _events_for(action: str, was_unseen: bool, was_unread: bool, was_active: bool) -> list[str]:
    out = []
    if action in (Action.SEEN, Action.READ, Action.ARCHIVE) and was_unseen:
        out.append("seen")
    if action == Action.READ and was_unread:
        out.append("read")
    if action == Action.ARCHIVE and was_active:
        out.append("archived")
    return out


def _mark(principal: InboxPrincipal, action: str, where: str, extra: dict[str, Any],
          ) -> MarkResult:
    now = timezone.now()
    sql = _MARK_SQL.format(where=where, set=_SET[action])
    params = {"client_id": principal.client_id, "recipient_id": principal.recipient_pk,
              "now": now, **extra}
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            events: list[dict[str, str]] = []
            changed = 0
            for message_id, delivery_id, was_unseen, was_unread, was_active, *_ in rows:
                names = _events_for(action, was_unseen, was_unread, was_active)
                if action == Action.UNREAD and not was_unread:
                    changed += 1
                changed += bool(names)
                events.extend({"delivery_id": str(delivery_id), "event": name,
                               "message_id": str(message_id)} for name in names)
            if events:
                rows_json = json.dumps([{**e, "ord": n} for n, e in enumerate(events)])
                cursor.execute(_EVENTS_SQL, {"rows": rows_json, "now": now})
        if events:
            webhook_events_record(items=[
                DeliveryEventItem(delivery_id=e["delivery_id"],
                                  event_type=ENGAGEMENT_EVENTS[e["event"]], occurred_at=now,
                                  detail={"inbox_message_id": e["message_id"]})
                for e in events if e["event"] in ENGAGEMENT_EVENTS], now=now)
        if changed:
            publish_counts(client_id=principal.client_id, recipient_pks=[principal.recipient_pk])
    return MarkResult(changed=changed, messages=[str(r[0]) for r in rows])


def inbox_message_mark(*, principal: InboxPrincipal, message_id: str, action: str,
                       ) -> MarkResult:
    """Marks one message of the principal's inbox seen, read, unread or archived (read
    implies seen; archive implies seen). Idempotent: marking twice changes nothing the second
    time. `messages` is empty when the message is not this inbox's (→ 404)."""
    if action not in Action.CHOICES:
        raise ValueError(f"Unknown action {action!r}.")
    return _mark(principal, action, "id = %(message_id)s", {"message_id": message_id})


def inbox_messages_read_all(*, principal: InboxPrincipal) -> MarkResult:
    """Marks every unread message of the inbox read (archived ones left alone)."""
    return _mark(principal, Action.READ, "read_at IS NULL AND archived_at IS NULL", {})


# --- Retention --------------------------------------------------------------------------------

_EXPIRE_SQL = """
DELETE FROM inbox_inboxmessage WHERE id IN (
    SELECT id FROM inbox_inboxmessage WHERE expires_at <= %(now)s
    ORDER BY expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
"""


def inbox_messages_expire(*, now: datetime | None = None, batch_size: int | None = None,
                          time_budget: float | None = None) -> int:
    """Deletes expired inbox messages, a batch per transaction, until none is left or the time
    budget (RETENTION_TIME_BUDGET_SECONDS) is spent. Returns how many were deleted. Their
    deliveries stay (they go with their notification, NOTIFICATION_RETENTION_DAYS)."""
    import time

    now = now or timezone.now()
    size = batch_size or int(settings.INBOX_RETENTION_BATCH_SIZE)
    budget = float(settings.RETENTION_TIME_BUDGET_SECONDS if time_budget is None else time_budget)
    deadline = time.monotonic() + budget
    total = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_EXPIRE_SQL, {"now": now, "limit": size})
            deleted = cursor.rowcount
        total += deleted
        if deleted < size or time.monotonic() >= deadline:
            break
    if total:
        logger.info("inbox retention: deleted %d expired messages", total)
    return total
