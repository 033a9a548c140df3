"""Reads for notifications: always scoped to the client asking."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Exists, OuterRef, Prefetch, QuerySet

from apps.clients.models import Client
from apps.core.exceptions import NotFound

from .models import Delivery, DeliveryEvent, Notification

DETAIL_DELIVERY_LIMIT = 1000


def notification_get(
    *, client: Client, notification_id: str, is_test: bool, with_timeline: bool = True
) -> Notification:
    """The client's notification of this mode (a test key sees only test notifications, a
    live key only live ones); 404 otherwise."""
    qs = Notification.objects.filter(
        client=client, id=notification_id, is_test=is_test
    ).select_related(
        "template_version__template"
    )
    if with_timeline:
        deliveries = (
            Delivery.objects.select_related("recipient")
            .prefetch_related(Prefetch("events", queryset=DeliveryEvent.objects.order_by("id")))
            .order_by("created_at", "id")
        )
        qs = qs.prefetch_related(Prefetch("deliveries", queryset=deliveries))
    notification = qs.first()
    if notification is None:
        raise NotFound("Notification not found.")
    return notification


def notification_status_counts(*, notification: Notification) -> dict[str, int]:
    rows = (
        Delivery.objects.filter(notification=notification)
        .values("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["status"]: row["n"] for row in rows}


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
    qs = Notification.objects.filter(client=client, is_test=is_test).select_related(
        "template_version__template")
    if status:
        qs = qs.filter(status=status)
    if channel:
        qs = qs.filter(channels__contains=[channel])
    if recipient:
        qs = qs.filter(Exists(Delivery.objects.filter(
            notification=OuterRef("pk"), recipient__client=client, recipient__external_id=recipient
        )))
    if created_after:
        qs = qs.filter(created_at__gte=created_after)
    if created_before:
        qs = qs.filter(created_at__lt=created_before)
    return qs
