"""Deleting a notification (DELETE /api/v1/notifications/{id})."""

from __future__ import annotations

from django.db import DatabaseError, transaction

from apps.audit.services import audit_record
from apps.core.exceptions import Conflict

from .models import Delivery, DeliveryStatus, Notification


@transaction.atomic
def notification_delete(*, notification: Notification) -> int:
    """Deletes the notification with its deliveries and their timelines; returns how many
    deliveries went with it.

    Refused (409 `notification_in_flight`) while any delivery is with a provider (`sending`) or
    a worker, sweeper or receipt holds one of its rows: the deliveries are locked first (NOWAIT),
    so nothing can claim one between the check and the delete — a dispatch message still queued
    for them later claims nothing. Waiting work (scheduled, queued, retrying) is simply dropped;
    a late provider receipt for a deleted delivery is answered and counted as unknown."""
    in_flight = Conflict(
        "A delivery of this notification is being sent right now; retry in a few seconds "
        "or cancel it first (PUT …/cancel).",
        code="notification_in_flight",
    )
    try:
        with transaction.atomic():
            statuses = list(
                Delivery.objects.select_for_update(nowait=True)
                .filter(notification=notification).order_by("id")
                .values_list("status", flat=True)
            )
    except DatabaseError as exc:  # a row is locked by a worker or a receipt right now
        raise in_flight from exc
    if DeliveryStatus.SENDING in statuses:
        raise in_flight
    Notification.objects.filter(id=notification.id).delete()
    audit_record(
        action="notification.delete", client=notification.client_id, object_type="notification",
        object_id=notification.pk, notification_id=notification.pk,
        changes={"deliveries": len(statuses),
                 "statuses": {s: statuses.count(s) for s in sorted(set(statuses))}},
    )
    return len(statuses)
