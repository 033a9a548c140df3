"""Reads for notifications: always scoped to the client asking.

Every read here costs a fixed number of queries whatever the size of the notification: the
counts are stored on it (status.py), deliveries are read a page at a time on an index.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from apps.clients.models import Client
from apps.core.db.rows import all_but, model_columns
from apps.core.exceptions import NotFound
from apps.recipients.models import Recipient
from apps.templates.models import Template, TemplateVersion

from .models import Channel, Delivery, DeliveryEvent, Notification
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
        "push_title", "sms_body", "whatsapp_body", "whatsapp_content_sid", "in_app_title",
        "in_app_body", "in_app_action_url", "in_app_data")
] + [f"template_version__template__{f}" for f in ("name", "channels", "sample_variables")]
# What a page of deliveries shows: not the address (encrypted, decrypted on load) nor the
# recipient's addresses, only the recipient's id.
_DELIVERY_FIELDS = [
    "id", "notification", "recipient", "recipient__external_id", "channel", "status", "attempts",
    "due_at", "provider", "provider_message_id", "error_code", "error_message", "created_at",
    "sent_at", "delivered_at", "completed_at",
]


def notification_get(
    *, client: Client, notification_id: str | uuid.UUID, is_test: bool,
    with_timeline: bool = False,
) -> Notification:
    """The client's notification of this mode (a test key sees only test notifications, a
    live key only live ones); 404 otherwise. One query, with its template version and
    template but not their content: its deliveries are read by `deliveries_page`
    (`with_timeline` is accepted for old callers and ignored). The statement is built once
    per process (the ORM's compile of the same join cost more than running it)."""
    try:
        ident = notification_id if isinstance(notification_id, uuid.UUID) else uuid.UUID(
            str(notification_id))
    except ValueError:
        raise NotFound("Notification not found.") from None
    read = _notification_read()
    with connection.cursor() as cursor:
        cursor.execute(read.sql, [client.pk, ident, is_test])
        row = cursor.fetchone()
    if row is None:
        raise NotFound("Notification not found.")
    return read.instance(row)


class _NotificationRead:
    """`Notification … select_related("template_version__template").defer(content)` as one
    plain statement."""

    def __init__(self) -> None:
        content = {name.rsplit("__", 1)[1] for name in _TEMPLATE_CONTENT}
        self.notification = model_columns(Notification, "n")
        self.version = model_columns(TemplateVersion, "v", all_but(TemplateVersion, content))
        self.template = model_columns(Template, "t", all_but(Template, content))
        self.sql = (
            f"SELECT {self.notification.sql}, {self.version.sql}, {self.template.sql} "
            f"FROM {Notification._meta.db_table} n "
            f"LEFT JOIN {TemplateVersion._meta.db_table} v ON v.id = n.template_version_id "
            f"LEFT JOIN {Template._meta.db_table} t ON t.id = v.template_id "
            "WHERE n.client_id = %s AND n.id = %s AND n.is_test = %s")

    def instance(self, row: Sequence[Any]) -> Notification:
        n, v = len(self.notification), len(self.version)
        notification: Notification = self.notification.instance(row[:n])
        version = None
        if row[n] is not None:
            version = self.version.instance(row[n:n + v])
            TemplateVersion.template.field.set_cached_value(
                version, self.template.instance(row[n + v:]))
        Notification.template_version.field.set_cached_value(notification, version)
        return notification


@functools.cache
def _notification_read() -> _NotificationRead:
    return _NotificationRead()


def notification_counts(*, notification: Notification) -> dict[str, int]:
    """Deliveries per status. The stored counts (no query) unless they were never computed
    (a notification older than the counts, or not refreshed since accepted) or a refresh
    skipped them longer than the refresh interval ago (status.py): then one aggregate."""
    counts_at = notification.counts_at
    behind = timezone.now() - timedelta(seconds=COUNTS_INTERVAL_SECONDS)
    if counts_at is not None and not (notification.counts_stale and counts_at <= behind):
        return {k: int(v) for k, v in sorted(notification.counts.items()) if v}
    return notification_status_counts(notification=notification)


_STATUS_COUNTS = (f"SELECT status, count(*) FROM {Delivery._meta.db_table} "
                  "WHERE notification_id = %s GROUP BY status ORDER BY status")


def notification_status_counts(*, notification: Notification) -> dict[str, int]:
    """Deliveries per status, aggregated now (index-only on (notification, status, …)); a
    plain statement (the ORM's compile of the aggregate cost more than running it)."""
    with connection.cursor() as cursor:
        cursor.execute(_STATUS_COUNTS, [notification.pk])
        return {status: int(n) for status, n in cursor.fetchall()}


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
    read = _deliveries_read(bool(status), bool(channel), after is not None)
    with connection.cursor() as cursor:
        cursor.execute(read.sql, _page_values(notification.pk, status, channel, after, limit))
        rows = [read.instance(row) for row in cursor.fetchall()]
    more = len(rows) > limit
    rows = rows[:limit]
    if with_events:
        _attach_events(rows)
    cursor_ = DeliveryCursor(created_at=rows[-1].created_at, id=rows[-1].id) if more else None
    return DeliveryPage(deliveries=rows, next=cursor_)


class _DeliveriesRead:
    """A page of deliveries (`_DELIVERY_FIELDS`, the recipient's external id) under one set
    of filters, as one plain statement built once per process."""

    def __init__(self, status: bool, channel: bool, after: bool) -> None:
        self.delivery = model_columns(Delivery, "d", frozenset(
            name for name in _DELIVERY_FIELDS if "__" not in name))
        self.recipient = model_columns(Recipient, "r", frozenset({"id", "external_id"}))
        self.sql = (
            f"SELECT {self.delivery.sql}, {self.recipient.sql} "
            f"FROM {Delivery._meta.db_table} d "
            f"JOIN {Recipient._meta.db_table} r ON r.id = d.recipient_id "
            f"WHERE {_deliveries_where(status, channel, after)} "
            "ORDER BY d.created_at, d.id LIMIT %s")

    def instance(self, row: Sequence[Any]) -> Delivery:
        n = len(self.delivery)
        delivery: Delivery = self.delivery.instance(row[:n])
        Delivery.recipient.field.set_cached_value(delivery, self.recipient.instance(row[n:]))
        return delivery


@functools.cache
def _deliveries_read(status: bool, channel: bool, after: bool) -> _DeliveriesRead:
    return _DeliveriesRead(status, channel, after)


def _deliveries_where(status: bool, channel: bool, after: bool) -> str:
    """The keyset page's condition; its values: notification id, [status], [channel],
    [created_at, id]."""
    where = ["d.notification_id = %s"]
    if status:
        where.append("d.status = %s")
    if channel:
        where.append("d.channel = %s")
    if after:
        where.append("(d.created_at, d.id) > (%s, %s)")
    return " AND ".join(where)


def _page_values(notification_id: Any, status: str | None, channel: str | None,
                 after: DeliveryCursor | None, limit: int) -> list[Any]:
    values: list[Any] = [notification_id]
    if status:
        values.append(status)
    if channel:
        values.append(channel)
    if after is not None:
        values.extend([after.created_at, after.id])
    values.append(limit + 1)
    return values


# --- Rows for the API's reads ----------------------------------------------------------------
# The API writes its JSON from plain rows (dicts by field name; apps/notifications/api/
# serializers.py), not model instances: building an instance per delivery and event, and a
# queryset per timeline, was most of a page's cost.

# A delivery row's keys: these fields, `recipient` being the recipient's external id, and
# `timeline` (a list of event rows) when the page was read with its events.
DELIVERY_ROW_FIELDS = (
    "id", "channel", "status", "attempts", "due_at", "provider", "provider_message_id",
    "error_code", "error_message", "created_at", "sent_at", "delivered_at", "completed_at",
)
# An event row's keys (and `delivery_id`).
EVENT_ROW_FIELDS = ("occurred_at", "event", "status", "provider", "provider_message_id",
                    "error_code", "error_message", "detail")


@dataclass(frozen=True)
class DeliveryRowsPage:
    rows: list[dict[str, Any]]
    next: DeliveryCursor | None


def deliveries_rows_page(
    *,
    notification: Notification,
    after: DeliveryCursor | None = None,
    status: str | None = None,
    channel: str | None = None,
    limit: int = DELIVERY_PAGE_SIZE,
    with_events: bool = False,
) -> DeliveryRowsPage:
    """`deliveries_page` as rows (DELIVERY_ROW_FIELDS, `recipient`, and with `with_events`
    `timeline`: event rows, oldest first): the same keyset, in one statement (the page's
    timelines joined to it, not a second query with the page's ids)."""
    read = _delivery_rows_read(bool(status), bool(channel), after is not None, with_events)
    with connection.cursor() as cursor:
        cursor.execute(read.sql, _page_values(notification.pk, status, channel, after, limit))
        fetched = cursor.fetchall()
    rows = read.rows(fetched)
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    return DeliveryRowsPage(rows=rows, next=DeliveryCursor(
        created_at=last["created_at"], id=last["id"]) if last else None)


class _DeliveryRowsRead:
    """One page's statement: its deliveries (and their recipients' external ids), with their
    events joined (one row per event, or one without) when `events`."""

    def __init__(self, status: bool, channel: bool, after: bool, events: bool) -> None:
        self.delivery = model_columns(Delivery, "d", frozenset(DELIVERY_ROW_FIELDS))
        self.names = (*self.delivery.attnames, "recipient")
        page = (f"FROM {Delivery._meta.db_table} d "
                f"WHERE {_deliveries_where(status, channel, after)} "
                "ORDER BY d.created_at, d.id LIMIT %s")
        recipients = f"JOIN {Recipient._meta.db_table} r ON r.id = d.recipient_id"
        self.events = None
        if not events:
            self.sql = (f"SELECT {self.delivery.sql}, r.external_id "
                        f"FROM {Delivery._meta.db_table} d {recipients} "
                        f"WHERE {_deliveries_where(status, channel, after)} "
                        "ORDER BY d.created_at, d.id LIMIT %s")
            return
        self.events = model_columns(DeliveryEvent, "e", frozenset(EVENT_ROW_FIELDS))
        self.event_names = tuple(self.events.attnames)
        # occurred_at is never null on an event: null here means a delivery without events.
        self.occurred_at = len(self.names) + self.event_names.index("occurred_at")
        self.sql = (
            f"SELECT {self.delivery.sql}, r.external_id, {self.events.sql} "
            f"FROM (SELECT {self.delivery.sql}, d.recipient_id {page}) d {recipients} "
            f"LEFT JOIN {DeliveryEvent._meta.db_table} e ON e.delivery_id = d.id "
            "ORDER BY d.created_at, d.id, e.id")

    def rows(self, fetched: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        n = len(self.delivery)
        if self.events is None:
            return [dict(zip(self.names, [*self.delivery.convert(values[:n]), values[n]],
                             strict=True)) for values in fetched]
        rows: list[dict[str, Any]] = []
        row: dict[str, Any] = {"id": None}
        for values in fetched:
            if values[0] != row["id"]:
                row = dict(zip(self.names, [*self.delivery.convert(values[:n]), values[n]],
                               strict=True))
                row["timeline"] = []
                rows.append(row)
            if values[self.occurred_at] is not None:
                row["timeline"].append(dict(zip(
                    self.event_names, self.events.convert(values[n + 1:]), strict=True)))
        return rows


@functools.cache
def _delivery_rows_read(status: bool, channel: bool, after: bool,
                        events: bool) -> _DeliveryRowsRead:
    return _DeliveryRowsRead(status, channel, after, events)


def _attach_events(deliveries: list[Delivery]) -> None:
    """Each delivery's timeline (oldest first) in one query, where `delivery.events.all()`
    finds it (the cache prefetch_related fills, without compiling a query per page)."""
    if not deliveries:
        return
    columns = model_columns(DeliveryEvent, "e")
    by_delivery: dict[Any, list[DeliveryEvent]] = {d.pk: [] for d in deliveries}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns.sql} FROM {DeliveryEvent._meta.db_table} e "
                       "WHERE e.delivery_id = ANY(%s) ORDER BY e.id",
                       [list(by_delivery)])
        for row in cursor.fetchall():
            event = columns.instance(row)
            by_delivery[event.delivery_id].append(event)
    cache_name = Delivery.events.rel.cache_name
    for delivery in deliveries:
        events: QuerySet[DeliveryEvent] = QuerySet(model=DeliveryEvent)
        events._result_cache = by_delivery[delivery.pk]
        events._prefetch_done = True  # type: ignore[attr-defined]
        delivery._prefetched_objects_cache = {cache_name: events}  # type: ignore[attr-defined]


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


# What a list row holds (and its keys): the notification's columns, and its template's id,
# key and version under the names `values()` gives them.
NOTIFICATION_ROW_FIELDS = (
    "id", "status", "is_test", "priority", "category", "channels", "variables", "metadata",
    "scheduled_at", "recipient_count", "created_at", "updated_at", "completed_at",
)
_CHANNEL_CONTAINS = {
    # `channels @> '["email"]'` with the value in the text (a validated choice): the partial
    # per-channel index (models.py) is then usable by every plan, generic ones included.
    channel: f"n.channels @> '{json.dumps([channel])}'::jsonb" for channel in Channel.values
}


@dataclass(frozen=True)
class NotificationList:
    """A client's notifications of one mode under the list's filters, newest first, read a
    keyset page at a time with statements built once per process per set of filters (the
    ORM's compile of this join cost more than running it). Rows: NOTIFICATION_ROW_FIELDS and
    `template_version__template_id`, `template_version__template__key`,
    `template_version__version`."""

    client_id: Any
    is_test: bool
    status: str | None = None
    channel: str | None = None
    recipient: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def page(self, *, after: tuple[datetime, uuid.UUID] | None = None, reverse: bool = False,
             limit: int) -> list[dict[str, Any]]:
        """Up to `limit` rows newest first, those older than `after` (created_at, id); with
        `reverse`, oldest first, those newer than `after`."""
        if self.channel is not None and self.channel not in _CHANNEL_CONTAINS:
            raise ValueError(f"unknown channel {self.channel!r}")
        read = _notification_list_read(
            bool(self.status), self.channel, bool(self.recipient), bool(self.created_after),
            bool(self.created_before), after is not None, reverse)
        values: list[Any] = [self.client_id, self.is_test]
        if self.status:
            values.append(self.status)
        if self.recipient:
            values.extend([self.client_id, self.recipient])
        if self.created_after:
            values.append(self.created_after)
        if self.created_before:
            values.append(self.created_before)
        if after is not None:
            values.extend(after)
        values.append(limit)
        with connection.cursor() as cursor:
            cursor.execute(read.sql, values)
            fetched = cursor.fetchall()
        return [read.row(row) for row in fetched]


class _NotificationListRead:
    def __init__(self, status: bool, channel: str | None, recipient: bool, created_after: bool,
                 created_before: bool, after: bool, reverse: bool) -> None:
        self.columns = model_columns(Notification, "n", frozenset(NOTIFICATION_ROW_FIELDS))
        self.names = (*self.columns.attnames, "template_version__template_id",
                      "template_version__template__key", "template_version__version")
        where = ["n.client_id = %s", "n.is_test = %s"]
        if status:
            where.append("n.status = %s")
        if channel:
            where.append(_CHANNEL_CONTAINS[channel])
        if recipient:
            # The recipient's deliveries (delivery_recipient_created index), not a probe of
            # every notification: a recipient is on few of a client's notifications.
            where.append(
                f"EXISTS (SELECT 1 FROM {Delivery._meta.db_table} d "
                "WHERE d.notification_id = n.id AND d.recipient_id IN ("
                f"SELECT r.id FROM {Recipient._meta.db_table} r "
                "WHERE r.client_id = %s AND r.external_id = %s))")
        if created_after:
            where.append("n.created_at >= %s")
        if created_before:
            where.append("n.created_at < %s")
        if after:
            where.append(f"(n.created_at, n.id) {'>' if reverse else '<'} (%s, %s)")
        order = "ASC" if reverse else "DESC"
        self.sql = (
            f"SELECT {self.columns.sql}, v.template_id, t.key, v.version "
            f"FROM {Notification._meta.db_table} n "
            f"JOIN {TemplateVersion._meta.db_table} v ON v.id = n.template_version_id "
            f"JOIN {Template._meta.db_table} t ON t.id = v.template_id "
            f"WHERE {' AND '.join(where)} "
            f"ORDER BY n.created_at {order}, n.id {order} LIMIT %s")

    def row(self, values: Sequence[Any]) -> dict[str, Any]:
        n = len(self.columns)
        return dict(zip(self.names, [*self.columns.convert(values[:n]), *values[n:]],
                        strict=True))


@functools.cache
def _notification_list_read(*flags: Any) -> _NotificationListRead:
    return _NotificationListRead(*flags)


def notification_list_rows(
    *,
    client: Client,
    is_test: bool,
    status: str | None = None,
    channel: str | None = None,
    recipient: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> NotificationList:
    """`notification_list` as rows, for the API's list (apps/notifications/api/pagination.py
    pages it)."""
    return NotificationList(client_id=client.pk, is_test=is_test, status=status,
                            channel=channel, recipient=recipient, created_after=created_after,
                            created_before=created_before)
