"""Accepting a send: a batch of one through the acceptance pipeline (bulk.py), plus cancel."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.clients.models import Client
from apps.core.exceptions import ApplicationError
from apps.core.tasks import publications_publish_on_commit
from apps.webhooks.outbound.outbox import webhook_completions_record

from .audit import audit_notification_cancel
from .bulk import (
    AcceptedDelivery,
    SendRequest,
    check_version,
    local_due_time,
    notifications_accept,
    single_field,
)
from .models import Delivery, DeliveryEvent, DeliveryStatus, Notification, NotificationStatus
from .status import notifications_refresh_status

logger = logging.getLogger(__name__)

__all__ = ["SendOutcome", "check_version", "local_due_time", "notification_cancel",
           "notification_send", "request_fingerprint"]


@dataclass(frozen=True)
class SendOutcome:
    notification: Notification
    replayed: bool  # an Idempotency-Key matched an earlier request: nothing new was created
    # The deliveries created (request order); empty for a replay and for a large send
    # accepted as a job (`expanding`: workers create its `planned` deliveries, fanout.py).
    deliveries: tuple[AcceptedDelivery, ...] = ()
    planned: int = 0
    expanding: bool = False


def request_fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def notification_replay(
    *, client: Client, idempotency_key: str, request_hash: str
) -> SendOutcome | None:
    """The earlier notification sent with this key (422 if it had another body), or None."""
    earlier = Notification.objects.filter(client=client, idempotency_key=idempotency_key).first()
    if earlier is None:
        return None
    if request_hash and earlier.request_hash and earlier.request_hash != request_hash:
        raise ApplicationError(
            "This Idempotency-Key was used with a different request body.",
            code="idempotency_key_reused",
            fields={"Idempotency-Key": ["Use a new key for a different request."]},
        )
    return SendOutcome(notification=earlier, replayed=True)


@transaction.atomic
def notification_send(
    *,
    client: Client,
    recipients: list[str | dict[str, Any]],
    template_id: str,
    variables: dict[str, Any] | None = None,
    channels: list[str] | None = None,
    priority: str = "normal",
    category: str | None = None,
    metadata: dict[str, Any] | None = None,
    scheduled_at: datetime | None = None,
    local_send_time: time | None = None,
    local_send_date: date | None = None,
    idempotency_key: str | None = None,
    request_hash: str = "",
    is_test: bool = False,
    charge: Callable[[int], None] | None = None,
    config_generation: str | None = None,
) -> SendOutcome:
    """Accepts a send: a batch of one (`notifications_accept`), its errors named as the body
    names its fields (`recipients[2]`). `is_test` (a test key's send) marks the notification
    and its deliveries: they go to the provider sandbox only (see providers/registry.py).

    With an `idempotency_key` already used by this client, nothing is created: the earlier
    notification is returned (`replayed`), or 422 `idempotency_key_reused` for another body.

    `charge` (the daily quota's, apps.clients.quotas.delivery_quota) is called with the number
    of new deliveries inside this transaction, before it commits. Called outside any
    transaction (as the API does), this is the request's only transaction: no savepoint.

    `config_generation`: the client's configuration generation the request's throttle read
    (apps/clients/config_generation.py); lets the templates come from this process's copy."""
    if local_send_time is not None and scheduled_at is not None:
        raise ApplicationError(
            "Use either scheduled_at or local_send_time, not both.",
            code="conflicting_schedule",
            fields={"local_send_time": ["Not allowed together with scheduled_at."]},
        )
    if idempotency_key:
        replay = notification_replay(client=client, idempotency_key=idempotency_key,
                                     request_hash=request_hash)
        if replay is not None:
            return replay
    request = SendRequest(
        recipients=recipients, template_id=str(template_id), variables=variables or {},
        channels=channels, priority=priority, category=category, metadata=metadata or {},
        scheduled_at=scheduled_at, local_send_time=local_send_time,
        local_send_date=local_send_date, idempotency_key=idempotency_key or None,
        request_hash=request_hash,
    )
    accepted = notifications_accept(client=client, requests=[request], is_test=is_test,
                                    field_name=single_field, fanout=True,
                                    config_generation=config_generation)
    if charge is not None:
        charge(accepted.delivery_count)
    return SendOutcome(notification=accepted.notifications[0], replayed=False,
                       deliveries=tuple(accepted.deliveries), planned=accepted.delivery_count,
                       expanding=accepted.job_id is not None)


@transaction.atomic
def notification_cancel(*, notification: Notification, actor: str = "") -> int:
    """Cancels every delivery not yet handed to a provider (scheduled, pending, queued,
    retrying). Returns how many; raises 409 if none could be (all already sent or final).

    A large send still being expanded from its accept job (fanout.py) is detached from it
    first: the UPDATE waits for a slice being expanded (it locks the notification's row), so
    that slice's deliveries are cancelled here and no later slice creates any."""
    now = timezone.now()
    cancellable = ("scheduled", "pending", "queued", "retrying")
    detached = Notification.objects.filter(
        id=notification.id, accept_job__isnull=False).update(accept_job=None, updated_at=now)
    ids = list(
        # Waits for a sweeper or worker holding a row: a cancel is definitive.
        Delivery.objects.select_for_update()
        .filter(notification=notification, status__in=cancellable)
        .values_list("id", flat=True)
    )
    if not ids and not detached:
        raise ApplicationError(
            "Nothing left to cancel: every delivery was already sent or has finished.",
            code="not_cancellable", status_code=409,
        )
    if detached and not Delivery.objects.filter(notification=notification).exists():
        # Cancelled before its first delivery was created: nothing for the refresh to derive.
        Notification.objects.filter(id=notification.id).update(
            status=NotificationStatus.CANCELLED, completed_at=now, updated_at=now)
    Delivery.objects.filter(id__in=ids).update(
        status=DeliveryStatus.CANCELLED, completed_at=now, lease_until=None, due_at=None,
        updated_at=now,
    )
    DeliveryEvent.objects.bulk_create(
        [DeliveryEvent(delivery_id=i, status=DeliveryStatus.CANCELLED, event="cancelled",
                       occurred_at=now, detail={"actor": actor} if actor else {})
         for i in ids]
    )
    notifications_refresh_status(notification_ids=[notification.id])
    publications_publish_on_commit(webhook_completions_record(notification_ids=[notification.id]))
    audit_notification_cancel(notification=notification, cancelled=len(ids))
    return len(ids)
