"""Dead letters: deliveries that ended `failed` after their last attempt, and their re-drive."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.clients.models import Client
from apps.privacy.tombstones import ERASED_PREFIX

from .audit import audit_deliveries_redrive
from .enqueue import deliveries_enqueue
from .models import Delivery, DeliveryEvent, DeliveryStatus
from .status import notifications_refresh_status

REDRIVE_LIMIT = 10_000


def failed_deliveries(
    *, client: Client | None = None, notification_id: UUID | str | None = None,
    delivery_ids: list[UUID | str] | None = None, failed_after: datetime | None = None,
    channel: str | None = None, is_test: bool | None = None,
) -> QuerySet[Delivery]:
    """Dead letters; `is_test` keeps one mode's (an API key re-drives only its own mode's)."""
    qs = Delivery.objects.filter(status=DeliveryStatus.FAILED)
    if client is not None:
        qs = qs.filter(client=client)
    if is_test is not None:
        qs = qs.filter(is_test=is_test)
    if notification_id is not None:
        qs = qs.filter(notification_id=notification_id)
    if delivery_ids is not None:
        qs = qs.filter(id__in=delivery_ids)
    if failed_after is not None:
        qs = qs.filter(completed_at__gte=failed_after)
    if channel:
        qs = qs.filter(channel=channel)
    return qs


def deliveries_redrive(*, deliveries: QuerySet[Delivery], actor: str, limit: int = REDRIVE_LIMIT) -> int:
    """Puts failed deliveries back in the queue with a fresh attempt budget.

    The re-drive is recorded on each delivery's timeline (event `redriven`, with the actor) and
    published after commit. Returns how many were re-driven."""
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            # An erased recipient's deliveries have no address left to send to.
            deliveries.exclude(recipient__external_id__startswith=ERASED_PREFIX)
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("completed_at", "id")
            .values("id", "priority", "notification_id", "attempts", "error_code")[:limit]
        )
        if not rows:
            return 0
        ids = [r["id"] for r in rows]
        Delivery.objects.filter(id__in=ids, status=DeliveryStatus.FAILED).update(
            status=DeliveryStatus.QUEUED, attempts=0, due_at=None, completed_at=None,
            lease_until=now + timedelta(seconds=settings.RELAY_REQUEUE_AFTER_SECONDS),
            updated_at=now,
        )
        DeliveryEvent.objects.bulk_create(
            [
                DeliveryEvent(
                    delivery_id=r["id"], status=DeliveryStatus.QUEUED, event="redriven",
                    occurred_at=now,
                    detail=_detail(actor, r),
                )
                for r in rows
            ]
        )
        notifications_refresh_status(notification_ids={r["notification_id"] for r in rows})
        audit_deliveries_redrive(rows=rows)
        items = [(str(r["id"]), r["priority"]) for r in rows]
        transaction.on_commit(lambda: deliveries_enqueue(items=items))
    return len(rows)


def _detail(actor: str, row: Any) -> dict[str, Any]:
    return {"actor": actor, "previous_attempts": row["attempts"], "previous_error": row["error_code"]}
