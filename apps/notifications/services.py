"""Accepting a send: validate against the domain, then commit the notification and its
deliveries in one transaction and publish them after commit."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.services import audit_notification_cancel, audit_notification_send
from apps.clients.models import Client, key_mode
from apps.core.crypto import pii_batch
from apps.core.exceptions import ApplicationError
from apps.recipients.models import Recipient
from apps.recipients.selectors import active_device_tokens, recipients_by_external_id
from apps.recipients.services import recipients_upsert
from apps.templates.models import TemplateVersion
from apps.templates.rendering import has_content_for
from apps.templates.selectors import active_versions_by_locale, pick_version, template_get_for_send
from apps.webhooks.outbound.outbox import webhook_completions_record

from .channels.registry import supported_channels
from .enqueue import deliveries_enqueue
from .models import Delivery, DeliveryEvent, DeliveryStatus, Notification, NotificationStatus
from .status import notifications_refresh_status

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendOutcome:
    notification: Notification
    replayed: bool  # an Idempotency-Key matched an earlier request: nothing new was created


def request_fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _check_schedule(scheduled_at: datetime | None) -> None:
    if scheduled_at is not None and scheduled_at < timezone.now() - timedelta(seconds=5):
        raise ApplicationError(
            "scheduled_at is in the past.",
            code="schedule_in_past",
            fields={"scheduled_at": ["Must be in the future."]},
        )


def _resolve_recipients(
    *, client: Client, recipients: list[str | dict[str, Any]], channels: list[str]
) -> list[Recipient]:
    """Inline recipients are upserted; ids must already exist. Keeps order, drops repeats."""
    inline = [r for r in recipients if isinstance(r, dict)]
    known = recipients_upsert(client=client, items=inline) if inline else {}
    wanted_ids = [r for r in recipients if isinstance(r, str) and r not in known]
    if wanted_ids:
        known.update(recipients_by_external_id(client=client, external_ids=wanted_ids,
                                               channels=channels))
    missing = {
        f"recipients[{i}]": ["Unknown recipient id; create it with PUT /api/v1/recipients/{id}."]
        for i, r in enumerate(recipients)
        if isinstance(r, str) and r not in known
    }
    if missing:
        raise ApplicationError("Unknown recipient.", code="unknown_recipient", fields=missing)
    ordered: dict[str, Recipient] = {}
    for r in recipients:
        external_id = r["id"] if isinstance(r, dict) else r
        ordered.setdefault(str(external_id), known[str(external_id)])
    return list(ordered.values())


@transaction.atomic
@pii_batch()  # each address encrypted once for the recipient and its deliveries
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
) -> SendOutcome:
    """Accepts a send. `is_test` (a test key's send) marks the notification and its deliveries:
    they go to the provider sandbox only (see channels/registry.py)."""
    variables = variables or {}
    if local_send_time is not None and scheduled_at is not None:
        raise ApplicationError(
            "Use either scheduled_at or local_send_time, not both.",
            code="conflicting_schedule",
            fields={"local_send_time": ["Not allowed together with scheduled_at."]},
        )
    if idempotency_key:
        earlier = Notification.objects.filter(client=client, idempotency_key=idempotency_key).first()
        if earlier is not None:
            return _replay(earlier, request_hash)

    template = template_get_for_send(client=client, template_ref=template_id)
    version = template.active_version
    assert version is not None  # template_get_for_send guarantees it
    channels = list(dict.fromkeys(channels or template.channels))
    available = supported_channels(mode=key_mode(is_test=is_test))
    unsupported = [c for c in channels if c not in available]
    if not channels or unsupported:
        raise ApplicationError(
            "No provider is configured for a requested channel.",
            code="channel_not_supported",
            fields={"channels": [f"Not available: {', '.join(unsupported) or 'none given'}. "
                                 f"Available: {', '.join(available)}."]},
        )
    _check_schedule(scheduled_at)

    resolved = _resolve_recipients(client=client, recipients=recipients, channels=channels)
    # Each recipient gets the active version of their locale (fr-CA → fr → the default).
    by_locale = active_versions_by_locale(template=template)
    pinned = {
        str(r.id): pick_version(by_locale, template.default_locale, r.locale) or version
        for r in resolved
    }
    for candidate in {v.id: v for v in [version, *pinned.values()]}.values():
        _check_version(template.key, candidate, channels, variables)
    if "push" in channels:
        with_devices = active_device_tokens(recipient_ids=[r.id for r in resolved])
        for recipient in resolved:
            recipient.has_active_device = str(recipient.id) in with_devices  # type: ignore[attr-defined]
    no_address = {}
    for index, recipient in enumerate(resolved):
        absent = [c for c in channels if not recipient.address_for(c)]
        if absent:
            no_address[f"recipients[{index}]"] = [f"No address for channel: {', '.join(absent)}."]
    if no_address:
        raise ApplicationError(
            "A recipient has no address for a requested channel.",
            code="recipient_missing_address",
            fields=no_address,
        )

    now = timezone.now()
    # "09:00 in each recipient's local time": one due time per recipient.
    local_due: dict[str, datetime] = {}
    if local_send_time is not None:
        local_due = {str(r.id): local_due_time(r.timezone, local_send_time, local_send_date, now)
                     for r in resolved}
        if local_send_date is not None and any(d <= now for d in local_due.values()):
            raise ApplicationError(
                "For some recipients that local time has already passed.",
                code="schedule_in_past",
                fields={"local_send_date": ["Pick a later date."]},
            )
        scheduled_at = min(local_due.values()) if local_due else None
    scheduled = scheduled_at is not None and scheduled_at > now
    notification = Notification(
        client=client,
        idempotency_key=idempotency_key or None,
        request_hash=request_hash,
        template_version=version,
        variables=variables,
        channels=channels,
        priority=priority,
        category=category or template.category,
        metadata=metadata or {},
        scheduled_at=scheduled_at,
        status=NotificationStatus.SCHEDULED if scheduled else NotificationStatus.PENDING,
        recipient_count=len(resolved),
        is_test=is_test,
    )
    try:
        with transaction.atomic():
            notification.save(force_insert=True)
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the race.
        earlier = Notification.objects.get(client=client, idempotency_key=idempotency_key)
        return _replay(earlier, request_hash)

    status = DeliveryStatus.SCHEDULED if scheduled else DeliveryStatus.PENDING
    requeue_lease = now + timedelta(seconds=settings.RELAY_REQUEUE_AFTER_SECONDS)

    def due_for(recipient: Recipient) -> datetime | None:
        if not scheduled:
            return None
        return local_due.get(str(recipient.id), scheduled_at)

    # The sweeper's lease: when a scheduled delivery is due, or when a lost publish is redone.
    deliveries = [
        Delivery(
            notification=notification,
            client=client,
            recipient=recipient,
            channel=channel,
            priority=priority,
            status=status,
            address=recipient.address_for(channel),
            due_at=due_for(recipient),
            lease_until=due_for(recipient) or requeue_lease,
            template_version=None if pinned[str(recipient.id)] == version else pinned[str(recipient.id)],
            is_test=is_test,
        )
        for recipient in resolved
        for channel in channels
    ]
    Delivery.objects.bulk_create(deliveries, batch_size=2000)
    DeliveryEvent.objects.bulk_create(
        [
            DeliveryEvent(delivery=d, status=status, event="accepted", occurred_at=now)
            for d in deliveries
        ],
        batch_size=2000,
    )
    if not scheduled:
        items = [(str(d.id), priority) for d in deliveries]
        transaction.on_commit(lambda: deliveries_enqueue(items=items))
    notification.prefetched_deliveries = deliveries  # type: ignore[attr-defined]
    audit_notification_send(notification=notification, template=template, recipients=resolved)
    return SendOutcome(notification=notification, replayed=False)


def _check_version(
    key: str, version: TemplateVersion, channels: list[str], variables: dict[str, Any]
) -> None:
    """422 unless this version has content for every channel and gets every variable."""
    no_content = [c for c in channels if not has_content_for(version, c)]
    if no_content:
        raise ApplicationError(
            f"Template '{key}' ({version.locale}) has no content for: {', '.join(no_content)}.",
            code="template_missing_channel",
            fields={"channels": [f"Add {', '.join(no_content)} content to the template."]},
        )
    missing_vars = [name for name in version.required_variables if name not in variables]
    if missing_vars:
        raise ApplicationError(
            f"Missing template variables: {', '.join(missing_vars)}.",
            code="missing_variables",
            fields={f"variables.{name}": ["Required by the template."] for name in missing_vars},
        )


def _replay(earlier: Notification, request_hash: str) -> SendOutcome:
    if request_hash and earlier.request_hash and earlier.request_hash != request_hash:
        raise ApplicationError(
            "This Idempotency-Key was used with a different request body.",
            code="idempotency_key_reused",
            fields={"Idempotency-Key": ["Use a new key for a different request."]},
        )
    return SendOutcome(notification=earlier, replayed=True)


def local_due_time(tz_name: str, at: time, on: date | None, now: datetime) -> datetime:
    """`at` o'clock in the recipient's time zone: on `on`, or the next time it comes round.
    An unknown or empty time zone counts as UTC; a local time skipped by a DST change moves
    forward with it (zoneinfo's fold rules)."""
    try:
        tz = ZoneInfo(tz_name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    local_now = now.astimezone(tz)
    day = on or local_now.date()
    candidate = datetime.combine(day, at, tzinfo=tz)
    if on is None and candidate <= local_now:
        candidate = datetime.combine(day + timedelta(days=1), at, tzinfo=tz)
    return candidate.astimezone(ZoneInfo("UTC"))


@transaction.atomic
def notification_cancel(*, notification: Notification, actor: str = "") -> int:
    """Cancels every delivery not yet handed to a provider (scheduled, pending, queued,
    retrying). Returns how many; raises 409 if none could be (all already sent or final)."""
    now = timezone.now()
    cancellable = ("scheduled", "pending", "queued", "retrying")
    ids = list(
        # Waits for a sweeper or worker holding a row: a cancel is definitive.
        Delivery.objects.select_for_update()
        .filter(notification=notification, status__in=cancellable)
        .values_list("id", flat=True)
    )
    if not ids:
        raise ApplicationError(
            "Nothing left to cancel: every delivery was already sent or has finished.",
            code="not_cancellable", status_code=409,
        )
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
    webhook_completions_record(notification_ids=[notification.id])
    audit_notification_cancel(notification=notification, cancelled=len(ids))
    return len(ids)
