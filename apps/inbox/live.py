"""The live contract between the API/workers and the stream process (docs/inbox.md "Live").

Writers publish, after their transaction commits, one JSON event per change on the Redis
pub/sub channel of the recipient's inbox:

    notifyhub:inbox:<client_id>:<recipient_pk>

so a stream process subscribes once to the pattern `notifyhub:inbox:*` (CHANNEL_PATTERN) and
routes each event to the connections of that inbox. Events:

    {"type": "message", "seq": N, "message": {... the list API's item (message_payload) ...}}
    {"type": "counts", "unread": U, "unseen": S, "total": T}

A `message` event is followed by the inbox's `counts`; engagement (seen/read/unread/archive/
read-all) publishes `counts` alone. Pub/sub loses what nobody listened to: that is fine, the
messages are in PostgreSQL, and a client reconnecting with `Last-Event-ID: N` is replayed
`messages_after(client_id, recipient_pk, N)` (complete: seqs are given in commit order).
Publishing never fails a write: Redis down is logged and the replay catches up."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, transaction

from apps.core.redis_clients import shared_redis

from .selectors import Counts, inbox_counts, inbox_counts_many, message_payload, messages_after

__all__ = [
    "CHANNEL_PATTERN", "CHANNEL_PREFIX", "channel_name", "counts_event", "inbox_counts",
    "message_event", "messages_after", "parse_channel", "publish_counts", "publish_inbox_event",
    "publish_inbox_events",
]

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "notifyhub:inbox:"
CHANNEL_PATTERN = CHANNEL_PREFIX + "*"


def channel_name(client_id: object, recipient_pk: object) -> str:
    return f"{CHANNEL_PREFIX}{client_id}:{recipient_pk}"


def parse_channel(channel: str | bytes) -> tuple[str, str] | None:
    """(client_id, recipient_pk) of a channel name, None if it is not an inbox channel."""
    name = channel.decode() if isinstance(channel, bytes) else channel
    if not name.startswith(CHANNEL_PREFIX):
        return None
    parts = name[len(CHANNEL_PREFIX):].split(":")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def message_event(message: Any) -> dict[str, Any]:
    return {"type": "message", "seq": message.seq, "message": message_payload(message)}


def counts_event(counts: Counts) -> dict[str, Any]:
    return counts.event()


def _redis() -> redis.Redis:
    """The process's fail-fast client (no retries, short timeouts) for INBOX_REDIS_URL."""
    return shared_redis(settings.INBOX_REDIS_URL, connect_timeout=0.5, timeout=1.0,
                        fail_fast=True)


def _publish_now(events: list[tuple[str, str, dict[str, Any]]]) -> None:
    if not events:
        return
    try:
        pipe = _redis().pipeline(transaction=False)
        for client_id, recipient_pk, event in events:
            pipe.publish(channel_name(client_id, recipient_pk),
                         json.dumps(event, separators=(",", ":"), default=str))
        pipe.execute()
    except redis.RedisError:
        # The rows are committed; a stream client catches up by Last-Event-ID on reconnect.
        logger.warning("could not publish %d inbox events (Redis unreachable)", len(events),
                       exc_info=True)


def publish_inbox_events(events: Iterable[tuple[object, object, dict[str, Any]]]) -> None:
    """Publishes (client_id, recipient_pk, event) triples after the current transaction
    commits (at once when none is open), in one pipeline, in order."""
    items = [(str(c), str(r), e) for c, r, e in events]
    if items:
        transaction.on_commit(lambda: _publish_now(items))


def publish_inbox_event(client_id: object, recipient_pk: object, event: dict[str, Any]) -> None:
    """Publishes one event on the inbox's channel after the current transaction commits."""
    publish_inbox_events([(client_id, recipient_pk, event)])


def publish_counts(*, client_id: object, recipient_pks: Iterable[object]) -> None:
    """The `counts` event of these inboxes, read after the commit (one statement for all of
    them) and published then, after whatever was published before in this transaction."""
    pks = sorted({str(p) for p in recipient_pks})
    if not pks:
        return

    def publish() -> None:
        try:
            counts = inbox_counts_many(pks)
        except DatabaseError:
            logger.warning("could not read the counts of %d inboxes", len(pks), exc_info=True)
            return
        _publish_now([(str(client_id), pk, c.event()) for pk, c in counts.items()])

    transaction.on_commit(publish)

