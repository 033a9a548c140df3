"""Reads of the inbox (docs/inbox.md). Every read names one recipient of one client, from a
verified token (`tokens.InboxPrincipal`): there is no way to name another inbox."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet

from .models import InboxMessage

# What the list API, the stream's `message` events and the replay show of a message.
MESSAGE_FIELDS = ("id", "seq", "delivery_id", "category", "title", "body", "action_url", "data",
                  "created_at", "seen_at", "read_at", "archived_at", "expires_at")


class Status:
    """`?status=` of the list: unread, unseen or all (archived messages are never listed)."""

    UNREAD = "unread"
    UNSEEN = "unseen"
    ALL = "all"
    CHOICES = (ALL, UNREAD, UNSEEN)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def message_payload(message: InboxMessage) -> dict[str, Any]:
    """One message as the API's list item and the stream's `message` event show it."""
    return {
        "id": str(message.id),
        "seq": message.seq,
        "delivery_id": str(message.delivery_id),
        "category": message.category,
        "title": message.title,
        "body": message.body,
        "action_url": message.action_url,
        "data": message.data,
        "created_at": _iso(message.created_at),
        "seen_at": _iso(message.seen_at),
        "read_at": _iso(message.read_at),
        "archived_at": _iso(message.archived_at),
        "expires_at": _iso(message.expires_at),
    }


def _inbox(client_id: str, recipient_pk: str) -> QuerySet[InboxMessage]:
    return InboxMessage.objects.filter(client_id=client_id, recipient_id=recipient_pk,
                                       archived_at__isnull=True)


def inbox_messages(*, client_id: str, recipient_pk: str, status: str = Status.ALL,
                   before_seq: int | None = None, limit: int = 50) -> list[InboxMessage]:
    """A page of one inbox, newest first (keyset: `seq < before_seq`); archived ones left
    out. Served by the partial indexes on (recipient, -seq)."""
    qs = _inbox(client_id, recipient_pk).only(*MESSAGE_FIELDS)
    if status == Status.UNREAD:
        qs = qs.filter(read_at__isnull=True)
    elif status == Status.UNSEEN:
        qs = qs.filter(seen_at__isnull=True)
    if before_seq is not None:
        qs = qs.filter(seq__lt=before_seq)
    return list(qs.order_by("-seq")[:limit])


def inbox_message_get(*, client_id: str, recipient_pk: str, message_id: str,
                      ) -> InboxMessage | None:
    """One message of this inbox (archived included), None if it is not this inbox's."""
    return (InboxMessage.objects.filter(client_id=client_id, recipient_id=recipient_pk,
                                        id=message_id).only(*MESSAGE_FIELDS).first())


def messages_after(client_id: str, recipient_pk: str, seq: int, limit: int = 100,
                   ) -> list[InboxMessage]:
    """The replay after a reconnect: this inbox's messages with `seq` above the last one the
    client saw (`Last-Event-ID`), oldest first, archived ones left out. Complete because
    seqs are given in commit order (models.py)."""
    return list(_inbox(client_id, recipient_pk).filter(seq__gt=seq)
                .only(*MESSAGE_FIELDS).order_by("seq")[:limit])


@dataclass(frozen=True)
class Counts:
    unread: int
    unseen: int
    total: int

    def as_dict(self) -> dict[str, int]:
        return {"unread": self.unread, "unseen": self.unseen, "total": self.total}

    def event(self) -> dict[str, Any]:
        """The stream's `counts` event."""
        return {"type": "counts", **self.as_dict()}


def inbox_counts(client_id: str, recipient_pk: str) -> Counts:
    """{"unread", "unseen", "total"} of one inbox (archived messages do not count)."""
    row = _inbox(client_id, recipient_pk).aggregate(
        total=Count("id"),
        unread=Count("id", filter=Q(read_at__isnull=True)),
        unseen=Count("id", filter=Q(seen_at__isnull=True)))
    return Counts(unread=row["unread"], unseen=row["unseen"], total=row["total"])


_COUNTS_MANY_SQL = """
SELECT recipient_id, count(*), count(*) FILTER (WHERE read_at IS NULL),
       count(*) FILTER (WHERE seen_at IS NULL)
FROM inbox_inboxmessage
WHERE recipient_id = ANY(%s::uuid[]) AND archived_at IS NULL
GROUP BY recipient_id
"""


def inbox_counts_many(recipient_pks: Iterable[str]) -> dict[str, Counts]:
    """The counts of several inboxes in one statement (after a dispatch chunk): recipient pk →
    Counts (an empty inbox too)."""
    pks: Sequence[str] = sorted({str(p) for p in recipient_pks})
    if not pks:
        return {}
    out = {pk: Counts(0, 0, 0) for pk in pks}
    with connection.cursor() as cursor:
        cursor.execute(_COUNTS_MANY_SQL, [list(pks)])
        for recipient_id, total, unread, unseen in cursor.fetchall():
            out[str(recipient_id)] = Counts(unread=unread, unseen=unseen, total=total)
    return out
