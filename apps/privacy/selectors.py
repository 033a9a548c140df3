"""Reads for GDPR: the recipient a request names, and everything NotifyHub holds about them
as one JSON document (docs/privacy.md), streamed.

The document is written section by section. The sections that grow with a person's history
(consent records, notifications, deliveries with their events and webhook messages, audit rows)
are read newest first in keyset-paginated batches of EXPORT_BATCH_SIZE: memory stays bounded and
the number of queries grows with the number of batches, never with the number of rows — a batch
of deliveries costs three queries (the deliveries, their events, their webhook messages)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.audit.api.serializers import AuditLogSerializer
from apps.audit.models import AuditLog
from apps.clients.models import Client
from apps.core.crypto import pii_hash
from apps.core.exceptions import NotFound
from apps.inbox.models import InboxMessage
from apps.inbox.selectors import message_payload
from apps.notifications.models import Delivery, DeliveryEvent, Notification, Suppression
from apps.preferences.models import ConsentRecord, PreferenceProfile
from apps.preferences.selectors import preference_document
from apps.recipients.models import Device, Recipient
from apps.webhooks.models import WebhookMessage

from .tombstones import is_tombstone

EXPORT_FORMAT = "notifyhub.recipient-export/1"
EXPORT_BATCH_SIZE = 500
# Text is handed to the response in pieces of about this size.
CHUNK_CHARS = 64 * 1024

M = TypeVar("M", bound=models.Model)


def recipient_for_privacy(*, client: Client, external_id: str) -> Recipient:
    """The client's recipient with this external id. 404 for an unknown id, another client's
    id, and the tombstone id an erasure left (there is nothing left to export or erase)."""
    recipient = (Recipient.objects.select_related("client")
                 .filter(client=client, external_id=external_id).first())
    if recipient is None or is_tombstone(recipient.external_id):
        raise NotFound(f"Recipient '{external_id}' not found.")
    return recipient


def addresses_of(*, recipient: Recipient) -> set[tuple[str, str]]:
    """(channel, address) pairs the recipient is or was reached at: their current addresses as
    each channel uses them, and those their deliveries were sent to (an address changed since
    is still theirs). Push is addressed to devices, not listed here."""
    current = {("email", recipient.email), ("sms", recipient.phone),
               ("whatsapp", recipient.whatsapp or recipient.phone)}
    past = (Delivery.objects.filter(recipient=recipient).exclude(channel="push")
            .values_list("channel", "address").distinct())
    return {(channel, address) for channel, address in {*current, *past} if address}


def suppressions_of(*, recipient: Recipient) -> QuerySet[Suppression]:
    """The client's suppressions of the recipient's addresses (present and past), and those its
    deliveries caused."""
    query = Q(source_delivery__recipient=recipient)
    for channel, address in addresses_of(recipient=recipient):
        query |= Q(channel=channel, address_hash=pii_hash(address))
    return Suppression.objects.filter(query, client_id=recipient.client_id)


# -- the document ----------------------------------------------------------------------------


def _newest_first(queryset: QuerySet[M], *, size: int | None = None) -> Iterator[list[M]]:
    """Batches of `queryset` ordered by (created_at, id) descending, read by keyset (each
    batch starts after the last row of the previous one, through the same index)."""
    size = size or EXPORT_BATCH_SIZE
    last: Any = None
    while True:
        page = queryset
        if last is not None:
            page = page.filter(Q(created_at__lt=last.created_at)
                               | Q(created_at=last.created_at, id__lt=last.id))
        rows = list(page.order_by("-created_at", "-id")[:size])
        if rows:
            yield rows
        if len(rows) < size:
            return
        last = rows[-1]


def _each(batches: Iterable[Sequence[M]], shape: Callable[[M], dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for batch in batches:
        for row in batch:
            yield shape(row)


def _recipient(r: Recipient) -> dict[str, Any]:
    return {"id": r.external_id, "email": r.email, "phone": r.phone, "whatsapp": r.whatsapp,
            "locale": r.locale, "timezone": r.timezone, "attributes": r.attributes,
            "created_at": r.created_at, "updated_at": r.updated_at}


def _device(d: Device) -> dict[str, Any]:
    return {"id": d.id, "platform": d.platform, "token": d.token, "is_active": d.is_active,
            "deactivated_at": d.deactivated_at, "deactivation_reason": d.deactivation_reason,
            "created_at": d.created_at, "updated_at": d.updated_at}


def _consent(c: ConsentRecord) -> dict[str, Any]:
    return {"id": c.id, "action": c.action, "channel": c.channel, "category": c.category,
            "source": c.source, "actor": c.actor, "ip": c.ip, "user_agent": c.user_agent,
            "detail": c.detail, "created_at": c.created_at}


def _suppression(s: Suppression) -> dict[str, Any]:
    return {"channel": s.channel, "category": s.category, "address": s.address,
            "reason": s.reason, "detail": s.detail, "source_delivery_id": s.source_delivery_id,
            "created_at": s.created_at}


def _notification(n: Notification) -> dict[str, Any]:
    version = n.template_version
    return {
        "id": n.id,
        "template": {"key": version.template.key, "version": version.version,
                     "locale": version.locale},
        "category": n.category, "priority": n.priority, "channels": n.channels,
        "status": n.status,
        # Variables and metadata belong to the notification: with several recipients they are
        # the same for all of them (there are no per-recipient variables).
        "variables": n.variables, "metadata": n.metadata,
        "recipient_count": n.recipient_count, "shared_with_other_recipients": n.recipient_count > 1,
        "scheduled_at": n.scheduled_at, "created_at": n.created_at,
        "completed_at": n.completed_at,
    }


def _event(e: DeliveryEvent) -> dict[str, Any]:
    return {"event": e.event, "status": e.status, "provider": e.provider,
            "provider_message_id": e.provider_message_id, "error_code": e.error_code,
            "error_message": e.error_message, "detail": e.detail, "occurred_at": e.occurred_at,
            "recorded_at": e.created_at}


def _webhook_message(m: WebhookMessage) -> dict[str, Any]:
    return {"id": m.id, "endpoint_id": m.endpoint_id, "event_type": m.event_type,
            "status": m.status, "attempts": m.attempts, "payload": m.payload,
            "created_at": m.created_at, "succeeded_at": m.succeeded_at}


def _delivery(d: Delivery, events: list[dict[str, Any]], messages: list[dict[str, Any]]
              ) -> dict[str, Any]:
    pinned = d.template_version
    return {
        "id": d.id, "notification_id": d.notification_id, "channel": d.channel,
        "address": d.address, "status": d.status, "priority": d.priority,
        "attempts": d.attempts, "segments": d.segments,
        # The locale version this recipient got; null = the notification's own version.
        "template_version": ({"version": pinned.version, "locale": pinned.locale}
                             if pinned is not None else None),
        "provider": d.provider, "provider_message_id": d.provider_message_id,
        "error_code": d.error_code, "error_message": d.error_message,
        "created_at": d.created_at, "sent_at": d.sent_at, "delivered_at": d.delivered_at,
        "completed_at": d.completed_at, "updated_at": d.updated_at,
        "events": events, "webhook_messages": messages,
    }


def _deliveries(recipient: Recipient) -> Iterator[dict[str, Any]]:
    """Newest first, with their timelines and client-webhook messages: three queries per batch."""
    queryset = Delivery.objects.filter(recipient=recipient).select_related("template_version")
    for batch in _newest_first(queryset):
        ids = [d.id for d in batch]
        events: dict[Any, list[dict[str, Any]]] = {i: [] for i in ids}
        for event in DeliveryEvent.objects.filter(delivery_id__in=ids).order_by("id"):
            events[event.delivery_id].append(_event(event))
        messages: dict[Any, list[dict[str, Any]]] = {i: [] for i in ids}
        for message in WebhookMessage.objects.filter(delivery_id__in=ids).order_by("created_at", "id"):
            messages[message.delivery_id].append(_webhook_message(message))
        for delivery in batch:
            yield _delivery(delivery, events[delivery.id], messages[delivery.id])


def _audit_row(row: AuditLog) -> dict[str, Any]:
    # The shape of GET /api/v1/audit/logs (staff rows without username or IP).
    return dict(AuditLogSerializer(row).data)


def recipient_export_sections(*, recipient: Recipient) -> Iterator[tuple[str, Any]]:
    """(key, value) pairs of the export document in order; a generator value is an array
    whose items are read lazily."""
    profile = PreferenceProfile.objects.filter(recipient=recipient).first()
    yield "format", EXPORT_FORMAT
    yield "generated_at", timezone.now()
    yield "client", {"id": recipient.client_id, "name": recipient.client.name}
    yield "recipient", _recipient(recipient)
    yield "devices", [_device(d) for d in Device.objects.filter(recipient=recipient)
                      .order_by("-created_at", "-id")]
    defaults = PreferenceProfile(recipient=recipient, client_id=recipient.client_id)
    yield "preferences", {"stored": profile is not None,
                          **preference_document(recipient=recipient, profile=profile or defaults)}
    yield "consent_history", _each(
        _newest_first(ConsentRecord.objects.filter(recipient=recipient)), _consent)
    yield "suppressions", [_suppression(s) for s in suppressions_of(recipient=recipient)
                           .order_by("-created_at", "-id")]
    notification_ids = Delivery.objects.filter(recipient=recipient).values("notification_id")
    yield "notifications", _each(_newest_first(
        Notification.objects.filter(id__in=notification_ids)
        .select_related("template_version__template")), _notification)
    yield "deliveries", _deliveries(recipient)
    # Their in-app inbox (the messages, with seen / read / archived; docs/inbox.md).
    yield "inbox_messages", _each(_newest_first(
        InboxMessage.objects.filter(recipient=recipient)), message_payload)
    yield "audit_log", _each(_newest_first(AuditLog.objects.filter(
        client_id=recipient.client_id, recipient_external_id=recipient.external_id)), _audit_row)


def _dumps(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)


def recipient_export(*, recipient: Recipient) -> Iterator[str]:
    """The export document as JSON text, in pieces of about CHUNK_CHARS (for a streaming
    response or a file). Rows are read while the text is consumed."""
    buffer: list[str] = []
    size = 0

    def push(text: str) -> Iterator[str]:
        nonlocal size
        buffer.append(text)
        size += len(text)
        if size >= CHUNK_CHARS:
            yield "".join(buffer)
            buffer.clear()
            size = 0

    yield from push("{")
    for index, (key, value) in enumerate(recipient_export_sections(recipient=recipient)):
        yield from push(("," if index else "") + _dumps(key) + ":")
        if isinstance(value, Iterator):
            yield from push("[")
            for position, item in enumerate(value):
                yield from push(("," if position else "") + _dumps(item))
            yield from push("]")
        else:
            yield from push(_dumps(value))
    buffer.append("}")
    yield "".join(buffer)
