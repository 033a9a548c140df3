"""Provider receipts (delivered, bounced, …) applied to deliveries: idempotent and monotonic."""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.core.logging import redact_pii
from apps.webhooks.outbound.outbox import webhook_receipts_record

from . import instrumentation
from .models import STATUS_RANK, Delivery, DeliveryEvent, DeliveryStatus
from .status import notifications_refresh_status
from .suppressions import SuppressionItem, suppressions_add

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProviderEvent:
    """A provider's receipt in NotifyHub's words (built by each inbound webhook's parser)."""

    provider: str
    event: str  # processed, delivered, bounced, dropped, deferred, opened, clicked, …
    occurred_at: datetime
    status: DeliveryStatus | None = None  # the delivery status it implies, if any
    delivery_id: str = ""
    provider_message_id: str = ""
    provider_event_id: str = ""
    error_code: str = ""
    error_message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    suppress_address: bool = False  # the provider says this address can never receive


@dataclass
class ReceiptReport:
    received: int = 0
    applied: int = 0
    unknown: int = 0
    duplicates: int = 0


def _valid_uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


@transaction.atomic
def delivery_receipts_apply(*, events: list[ProviderEvent], test_only: bool = False) -> ReceiptReport:
    """Applies a verified batch of receipts. `test_only` (receipts from the test-mode sandbox,
    verified with the test-mode credentials) restricts them to test deliveries: anything else
    they name counts as unknown."""
    report = ReceiptReport(received=len(events))
    if not events:
        return report
    # Bounce texts may quote the address ("550 <jane@example.com>: no such user").
    events = [replace(e, error_message=redact_pii(e.error_message)) if e.error_message else e
              for e in events]
    ids = {i for e in events if (i := _valid_uuid(e.delivery_id))}
    by_message: dict[str, set[str]] = {}
    for e in events:
        if e.provider_message_id:
            by_message.setdefault(e.provider, set()).add(e.provider_message_id)
    query = Q(id__in=ids)
    for provider, message_ids in by_message.items():
        query |= Q(provider=provider, provider_message_id__in=message_ids)
    # The (encrypted) address is read only for the few receipts that suppress it.
    candidates = Delivery.objects.select_for_update().filter(query).defer("address")
    if test_only:
        candidates = candidates.filter(is_test=True)
    deliveries = {str(d.id): d for d in candidates.order_by("id")}
    by_msg_id = {(d.provider, d.provider_message_id): d for d in deliveries.values()}

    # Receipts already stored (same provider event id) are skipped: the same callback twice
    # changes nothing.
    seen_ids = [e.provider_event_id for e in events if e.provider_event_id]
    seen = set(
        DeliveryEvent.objects.filter(
            provider__in={e.provider for e in events}, provider_event_id__in=seen_ids
        ).values_list("provider_event_id", flat=True)
    ) if seen_ids else set()

    now = timezone.now()
    new_events: list[DeliveryEvent] = []
    changed: dict[str, Delivery] = {}
    suppress: list[tuple[Delivery, ProviderEvent]] = []
    for e in sorted(events, key=lambda ev: ev.occurred_at):
        delivery = deliveries.get(_valid_uuid(e.delivery_id) or "") or by_msg_id.get(
            (e.provider, e.provider_message_id)
        )
        if delivery is None:
            report.unknown += 1
            logger.info("receipt for unknown message from %s (event %s) ignored", e.provider, e.event)
            continue
        if e.provider_event_id and e.provider_event_id in seen:
            report.duplicates += 1
            continue
        if e.provider_event_id:
            seen.add(e.provider_event_id)
        if not delivery.address:
            # The recipient was erased (every accepted delivery has an address until then): the
            # status still counts, the provider's text and details (which may echo the address,
            # a click's URL) are not kept.
            e = dataclasses.replace(e, error_message="", detail={})
        if e.status is not None and STATUS_RANK[e.status] > STATUS_RANK[DeliveryStatus(delivery.status)]:
            delivery.status = e.status
            if e.status == DeliveryStatus.DELIVERED:
                delivery.delivered_at = e.occurred_at
            if e.status in (DeliveryStatus.DELIVERED, DeliveryStatus.BOUNCED, DeliveryStatus.FAILED):
                delivery.completed_at = now
                delivery.lease_until = None
                delivery.due_at = None
            if e.error_code or e.error_message:
                delivery.error_code = e.error_code
                delivery.error_message = e.error_message
            changed[str(delivery.id)] = delivery
            report.applied += 1
            if e.suppress_address and not delivery.is_test:  # simulated: never suppresses
                suppress.append((delivery, e))
        new_events.append(
            DeliveryEvent(
                delivery=delivery,
                status=delivery.status,
                event=e.event,
                provider=e.provider,
                provider_message_id=e.provider_message_id or delivery.provider_message_id,
                provider_event_id=e.provider_event_id,
                error_code=e.error_code,
                error_message=e.error_message,
                detail=e.detail,
                occurred_at=e.occurred_at,
            )
        )
    if changed:
        _update_deliveries(list(changed.values()), now)
        instrumentation.observe_receipts(changed.values())
    DeliveryEvent.objects.bulk_create(new_events, ignore_conflicts=True)
    if suppress:
        addresses = dict(Delivery.objects.filter(id__in=[d.id for d, _ in suppress])
                         .values_list("id", "address"))
        suppressions_add(items=[
            SuppressionItem(client_id=d.client_id, channel=d.channel, address=addresses[d.id],
                            reason=e.error_code or e.event, detail=e.error_message,
                            delivery_id=d.id)
            for d, e in suppress
        ])
    notifications_refresh_status(
        notification_ids={d.notification_id for d in changed.values()}
    )
    webhook_receipts_record(deliveries=changed.values(), events=new_events)
    return report


_UPDATE_SQL = """
UPDATE notifications_delivery AS d
SET status = x.status, delivered_at = x.delivered_at, completed_at = x.completed_at,
    lease_until = x.lease_until, due_at = x.due_at, error_code = x.error_code,
    error_message = x.error_message, updated_at = %(now)s
FROM jsonb_to_recordset(%(rows)s::jsonb) AS x(
    id uuid, status text, delivered_at timestamptz, completed_at timestamptz,
    lease_until timestamptz, due_at timestamptz, error_code text, error_message text)
WHERE d.id = x.id
"""


def _update_deliveries(rows: list[Delivery], now: datetime) -> None:
    """One UPDATE for the batch (Django's bulk_update builds a CASE per column in Python,
    which costs more CPU than the receipts themselves)."""
    payload = [
        {"id": str(d.id), "status": d.status,
         "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None,
         "completed_at": d.completed_at.isoformat() if d.completed_at else None,
         "lease_until": d.lease_until.isoformat() if d.lease_until else None,
         "due_at": d.due_at.isoformat() if d.due_at else None,
         "error_code": d.error_code, "error_message": d.error_message}
        for d in rows
    ]
    with connection.cursor() as cursor:
        cursor.execute(_UPDATE_SQL, {"rows": json.dumps(payload), "now": now})
