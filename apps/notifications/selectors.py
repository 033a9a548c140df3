"""Reads for notifications: always scoped to the client asking.

Every read here costs a fixed number of queries whatever the size of the notification: the
counts are stored on it (status.py), deliveries are read a page at a time on an index.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import BooleanField, Count, Exists, OuterRef, Prefetch, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from apps.clients.models import Client
from apps.core.exceptions import NotFound
from apps.recipients.models import Recipient

from .models import Delivery, DeliveryEvent, Notification
from .status import COUNTS_INTERVAL_SECONDS

# Deliveries shown by GET /notifications/{id} (the rest: its `deliveries_next` link).
DETAIL_DELIVERY_PAGE = 20
DELIVERY_PAGE_SIZE = 50
DELIVERY_PAGE_MAX = 500

# Reads show the template's id, key and version, never its content: leave the bodies in the
# database (a list page would otherwise carry 50 copies of an HTML body).
_TEMPLATE_CONTENT = [
    f"template_version__{f}" for f in (
        "subject", "text_body", "html_body", "required_variables", "push_body", "push_data",
        "push_title", "sms_body", "whatsapp_body", "whatsapp_content_sid")
] + [f"template_version__template__{f}" for f in ("name", "channels", "sample_variables")]
# What a page of deliveries shows: not the address (encrypted, decrypted on load) nor the
# recipient's addresses, only the recipient's id.
_DELIVERY_FIELDS = [
    "id", "notification", "recipient", "recipient__external_id", "channel", "status", "attempts",
    "due_at", "provider", "provider_message_id", "error_code", "error_message", "created_at",
    "sent_at", "delivered_at", "completed_at",
]


def notification_get(
    *, client: Client, notification_id: str, is_test: bool, with_timeline: bool = False
) -> Notification:
    """The client's notification of this mode (a test key sees only test notifications, a
    live key only live ones); 404 otherwise. One query: its deliveries are read by
    `deliveries_page` (`with_timeline` is accepted for old callers and ignored)."""
    notification = (
        Notification.objects.filter(client=client, id=notification_id, is_test=is_test)
        .select_related("template_version__template")
        .defer(*_TEMPLATE_CONTENT)
        .first()
    )
    if notification is None:
        raise NotFound("Notification not found.")
    return notification


def notification_counts(*, notification: Notification) -> dict[str, int]:
    """Deliveries per status. The stored counts (no query) unless they were never computed
    (a notification older than the counts, or not refreshed since accepted) or a refresh
    skipped them longer than the refresh interval ago (status.py): then one aggregate."""
    counts_at = notification.counts_at
    behind = timezone.now() - timedelta(seconds=COUNTS_INTERVAL_SECONDS)
    if counts_at is not None and not (notification.counts_stale and counts_at <= behind):
        return {k: int(v) for k, v in sorted(notification.counts.items()) if v}
    return notification_status_counts(notification=notification)


def notification_status_counts(*, notification: Notification) -> dict[str, int]:
    """Deliveries per status, aggregated now (index-only on (notification, status, …))."""
    rows = (
        Delivery.objects.filter(notification=notification)
        .values("status")
        .annotate(n=Count("id"))
        .order_by("status")
    )
    return {row["status"]: row["n"] for row in rows}


@dataclass(frozen=True)
class DeliveryCursor:
    """Where a page of deliveries ends: the last (created_at, id) returned."""

    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> DeliveryCursor:
        """Raises ValueError for anything that is not a cursor this API handed out."""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            at, _, ident = raw.partition("|")
            created_at = datetime.fromisoformat(at)
            if created_at.tzinfo is None:
                raise ValueError("naive")
            return cls(created_at=created_at, id=uuid.UUID(ident))
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise ValueError("Not a valid cursor.") from exc


@dataclass(frozen=True)
class DeliveryPage:
    deliveries: list[Delivery]
    next: DeliveryCursor | None


def deliveries_page(
    *,
    notification: Notification,
    after: DeliveryCursor | None = None,
    status: str | None = None,
    channel: str | None = None,
    limit: int = DELIVERY_PAGE_SIZE,
    with_events: bool = False,
) -> DeliveryPage:
    """A page of the notification's deliveries in the order they were accepted
    (created_at, then id), after `after`: a keyset on the (notification, [status,] created_at,
    id) indexes, so page 1,000 costs what page 1 does and rows accepted or changed meanwhile
    never shift a page. One query, plus one for the timelines with `with_events`."""
    qs = (Delivery.objects.filter(notification=notification).select_related("recipient")
          .only(*_DELIVERY_FIELDS))
    if status:
        qs = qs.filter(status=status)
    if channel:
        qs = qs.filter(channel=channel)
    if after is not None:
        qs = qs.filter(RawSQL(
            '("notifications_delivery"."created_at", "notifications_delivery"."id") > (%s, %s)',
            (after.created_at, after.id), output_field=BooleanField(),
        ))
    if with_events:
        qs = qs.prefetch_related(
            Prefetch("events", queryset=DeliveryEvent.objects.order_by("id")))
    rows = list(qs.order_by("created_at", "id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = DeliveryCursor(created_at=rows[-1].created_at, id=rows[-1].id) if more else None
    return DeliveryPage(deliveries=rows, next=cursor)


def notification_list(
    *,
    client: Client,
    is_test: bool,
    status: str | None = None,
    channel: str | None = None,
    recipient: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Notification]:
    qs = (Notification.objects.filter(client=client, is_test=is_test)
          .select_related("template_version__template")
          .defer("counts", "counts_at", "counts_stale", "request_hash", "idempotency_key",
                 *_TEMPLATE_CONTENT))
    if status:
        qs = qs.filter(status=status)
    if channel:
        qs = qs.filter(channels__contains=[channel])
    if recipient:
        # The recipient's deliveries (delivery_recipient_created index), not a probe of every
        # notification: a recipient is on few of a client's notifications.
        recipient_ids = Recipient.objects.filter(client=client, external_id=recipient).values("id")
        qs = qs.filter(Exists(Delivery.objects.filter(
            recipient_id__in=recipient_ids, notification=OuterRef("pk"))))
    if created_after:
        qs = qs.filter(created_at__gte=created_after)
    if created_before:
        qs = qs.filter(created_at__lt=created_before)
    return qs
