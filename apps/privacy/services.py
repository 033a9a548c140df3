"""Writes for GDPR: erasing a recipient (and recording exports).

`recipient_erase` removes a person's personal data from every table in ONE transaction: a
refused or failed erasure changes nothing, and nobody ever sees a half-erased person. One
transaction is enough because the history it rewrites is bounded: deliveries and their events
live NOTIFICATION_RETENTION_DAYS (90), idempotency records a day, and the audit rows it
rewrites are the ones about this one recipient. docs/privacy.md says what is removed, what is
kept and why.

The recipient row itself is replaced: a new row with the tombstone id (`erased-<hex>`) and no
personal data takes over the deliveries, and the old row is deleted with its devices,
preference profile and consent records. A send or preference change that read the person
before the erasure and commits after it then fails on its foreign key instead of writing their
address again; unsubscribe links of the old row answer 404.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import JSONField, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from apps.audit.models import ActorType, AuditLog
from apps.audit.services import audit_record
from apps.core.exceptions import Conflict, NotFound
from apps.core.models import IdempotencyRecord
from apps.core.tasks import publications_publish_on_commit
from apps.inbox.models import InboxMessage
from apps.notifications.models import (
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Notification,
    Suppression,
)
from apps.notifications.resilience._redis import client_from_settings
from apps.notifications.status import notifications_refresh_status
from apps.preferences.caps import cap_key
from apps.preferences.models import ConsentRecord, PreferenceProfile
from apps.preferences.snapshot import cache_forget
from apps.recipients.models import Device, Recipient
from apps.webhooks.models import WebhookAttempt, WebhookMessage
from apps.webhooks.outbound.outbox import webhook_completions_record

from .selectors import addresses_of, suppressions_of
from .tombstones import new_tombstone

logger = logging.getLogger(__name__)

ERASED_TEXT = "[erased]"
# Deliveries not yet handed to a provider: cancelled (reason `erased`) so nothing is sent.
CANCELLABLE = (DeliveryStatus.SCHEDULED, DeliveryStatus.PENDING, DeliveryStatus.QUEUED,
               DeliveryStatus.RETRYING)
# Values shorter than this are not searched for inside other text (a short device token
# would match unrelated records); they are still removed from the recipient's own rows.
MIN_NEEDLE = 6
# Keys of a delivery event's `detail` that are NotifyHub's own codes and counts; every other
# key (a provider's engagement `url` and `useragent` …) is dropped on erasure.
SAFE_EVENT_DETAIL_KEYS = (
    "attempt", "reason", "until", "next_attempt_at", "gave_up_after_attempts",
    "failed_over_from", "previous_attempts", "previous_error", "twilio_status", "error_code",
    "type", "devices", "sent", "deactivated", "deactivation_reason", "deactivation_reasons",
    "actor",
)
_EVENT_DETAIL_SQL = """(
    SELECT COALESCE(jsonb_object_agg(kv.key, kv.value), '{}'::jsonb)
    FROM jsonb_each(notifications_deliveryevent.detail) AS kv
    WHERE kv.key = ANY(%s)
)"""
# A client-webhook payload about an erased delivery: the tombstone id, no provider text, no
# metadata, no engagement details. Keys a payload does not have are not added.
_WEBHOOK_PAYLOAD_SQL = """(
    jsonb_set(jsonb_set(jsonb_set(webhooks_webhookmessage.payload,
        '{data,recipient}', to_jsonb(%s::text), false),
        '{data,error_message}', '""'::jsonb, false),
        '{data,metadata}', '{}'::jsonb, false)
    #- '{data,url}' #- '{data,useragent}'
)"""


@dataclass(frozen=True)
class ErasureResult:
    tombstone: str
    erased_at: datetime
    counts: dict[str, int]


def _in_flight(message: str) -> Conflict:
    return Conflict(message, code="recipient_in_flight")


def recipient_export_log(*, recipient: Recipient) -> None:
    """The audit row of an export (who took a copy of this person's data, when)."""
    audit_record(action="recipient.export", client=recipient.client_id, object_type="recipient",
                 object_id=recipient.pk, recipient_external_id=recipient.external_id)


def recipient_erase(*, recipient: Recipient) -> ErasureResult:
    """Erases this recipient (see the module docstring); returns the tombstone id and counts.

    409 `recipient_in_flight` while one of their deliveries is being handed to a provider
    (`sending`) or a worker holds one of their rows, or when a send or preference change for
    them commits at the same moment: nothing is changed, retry a few seconds later.
    404 when the recipient was erased meanwhile."""
    try:
        with transaction.atomic():
            result = _erase(recipient)
            # Foreign keys are checked at commit; check now, so a concurrent send that still
            # references the old row fails this erasure here (and it is retried), whether or
            # not a caller's transaction surrounds this one.
            connection.check_constraints()
    except IntegrityError as exc:
        raise _in_flight("A send or preference change for this recipient was being written "
                         "at the same moment; retry in a few seconds.") from exc
    logger.info("recipient erased: client %s, now %s: %s", recipient.client_id,
                result.tombstone, result.counts)
    return result


def _erase(recipient: Recipient) -> ErasureResult:
    now = timezone.now()
    old = (Recipient.objects.select_for_update()
           .filter(pk=recipient.pk, external_id=recipient.external_id).first())
    if old is None:
        raise NotFound(f"Recipient '{recipient.external_id}' not found.")
    client_id = old.client_id
    counts: dict[str, int] = {}

    # 1. Their deliveries, locked without waiting: a worker or a receipt holding one, or a
    #    delivery with a provider right now, means "retry shortly".
    try:
        with transaction.atomic():
            rows = list(Delivery.objects.select_for_update(nowait=True).filter(recipient=old)
                        .order_by("id").values_list("id", "status", "notification_id"))
    except DatabaseError as exc:
        raise _in_flight("A delivery to this recipient is being processed right now; "
                         "retry in a few seconds.") from exc
    if any(status == DeliveryStatus.SENDING for _, status, _ in rows):
        raise _in_flight("A delivery to this recipient is being handed to a provider right "
                         "now; retry in a few seconds.")
    notification_ids = {notification_id for _, _, notification_id in rows}

    # 2. Nothing more is sent: what has not been sent ends `cancelled`, reason `erased`.
    cancel_ids = [i for i, status, _ in rows if status in CANCELLABLE]
    if cancel_ids:
        Delivery.objects.filter(id__in=cancel_ids).update(
            status=DeliveryStatus.CANCELLED, error_code="erased", completed_at=now,
            lease_until=None, due_at=None, updated_at=now)
        DeliveryEvent.objects.bulk_create(
            [DeliveryEvent(delivery_id=i, status=DeliveryStatus.CANCELLED, event="cancelled",
                           error_code="erased", detail={"reason": "erased"}, occurred_at=now)
             for i in cancel_ids], batch_size=2000)
    counts["deliveries_cancelled"] = len(cancel_ids)

    # 3. The tombstone takes over the history; addresses and provider texts go.
    needles = _needles(old)
    suppression_ids = list(suppressions_of(recipient=old).values_list("id", flat=True))
    tombstone = Recipient.objects.create(client_id=client_id, external_id=new_tombstone())
    counts["deliveries_scrubbed"] = Delivery.objects.filter(recipient=old).update(
        recipient=tombstone, address="", error_message="", updated_at=now)
    their_deliveries = Delivery.objects.filter(recipient=tombstone).values("id")
    counts["delivery_events_scrubbed"] = DeliveryEvent.objects.filter(
        delivery_id__in=their_deliveries).update(
        error_message="",
        # Constant SQL, values as parameters.
        detail=RawSQL(_EVENT_DETAIL_SQL, [list(SAFE_EVENT_DETAIL_KEYS)],  # noqa: S611
                      output_field=JSONField()))

    # 4. Suppressions stay (never send again to an address that bounced or complained), but
    #    without the address: only its keyed hash is kept, which still blocks a later send to it
    #    and cannot be turned back into the address.
    counts["suppressions_scrubbed"] = Suppression.objects.filter(id__in=suppression_ids).update(
        address="", detail="")

    # 5. Notifications addressed to them alone lose their variables and metadata (with several
    #    recipients these are shared, and there are no per-recipient variables).
    single = Notification.objects.filter(id__in=notification_ids, recipient_count=1)
    single_ids = list(single.values_list("id", flat=True))
    counts["notifications_scrubbed"] = single.update(variables={}, metadata={})
    keyed = Q()
    for needle in needles:
        keyed |= Q(idempotency_key__icontains=needle)
    if needles:
        Notification.objects.filter(keyed, id__in=notification_ids).update(idempotency_key=None)
    if cancel_ids:
        cancelled_in = {n for i, status, n in rows if status in CANCELLABLE}
        notifications_refresh_status(notification_ids=cancelled_in)
        publications_publish_on_commit(webhook_completions_record(notification_ids=cancelled_in))

    # 6. Client-webhook messages about their deliveries (and their notifications).
    messages = WebhookMessage.objects.filter(
        Q(delivery_id__in=their_deliveries) | Q(notification_id__in=single_ids, delivery_id=None))
    counts["webhook_messages_scrubbed"] = messages.update(
        payload=RawSQL(_WEBHOOK_PAYLOAD_SQL, [tombstone.external_id],  # noqa: S611
                       output_field=JSONField()),
        updated_at=now)
    WebhookAttempt.objects.filter(message__in=messages).update(response_body="")

    # 7. Devices, preferences, consent evidence and their in-app inbox are deleted.
    counts["inbox_messages_deleted"] = InboxMessage.objects.filter(recipient=old).delete()[0]
    device_ids = [str(i) for i in Device.objects.filter(recipient=old).values_list("id", flat=True)]
    counts["devices_deleted"] = Device.objects.filter(recipient=old).delete()[0]
    counts["consent_records_deleted"] = ConsentRecord.objects.filter(recipient=old).delete()[0]
    counts["preference_profiles_deleted"] = PreferenceProfile.objects.filter(recipient=old).delete()[0]

    # 8. Stored API responses, audit rows and admin history that name them.
    rewrite = _Rewrite(external_id=old.external_id, tombstone=tombstone.external_id,
                       needles=needles)
    counts["idempotency_records_scrubbed"] = _idempotency_records_scrub(client_id, rewrite)
    counts["audit_rows_rewritten"] = _audit_rows_rewrite(client_id, rewrite)
    counts["admin_log_entries_rewritten"] = _admin_log_rewrite(old, device_ids, tombstone)

    Recipient.objects.filter(pk=old.pk).delete()
    audit_record(action="recipient.erase", client=client_id, object_type="recipient",
                 object_id=tombstone.pk, recipient_external_id=tombstone.external_id,
                 changes={"tombstone": tombstone.external_id, "counts": counts})
    old_id = str(old.pk)
    _caches_forget(old_id)  # now, and after commit (a reader may re-add the old values)
    transaction.on_commit(lambda: _caches_forget(old_id))
    return ErasureResult(tombstone=tombstone.external_id, erased_at=now, counts=counts)


def _needles(recipient: Recipient) -> list[str]:
    """The person's contact values (present and past addresses, device tokens) to look for
    inside other text."""
    values = [*(address for _, address in addresses_of(recipient=recipient)),
              recipient.whatsapp,
              *Device.objects.filter(recipient=recipient).values_list("token", flat=True)]
    return sorted({v for v in values if v and len(v) >= MIN_NEEDLE}, key=len, reverse=True)


@dataclass(frozen=True)
class _Rewrite:
    """Replaces the external id (exact values) by the tombstone and contact values (inside any
    text) by ERASED_TEXT, at any depth of a JSON value."""

    external_id: str
    tombstone: str
    needles: Sequence[str]

    def __call__(self, value: Any, *, drop: Iterable[str] = ()) -> Any:
        drop = frozenset(drop)
        if isinstance(value, dict):
            return {k: self(v, drop=drop) for k, v in value.items() if k not in drop}
        if isinstance(value, list):
            return [self(v, drop=drop) for v in value]
        if isinstance(value, str):
            if value == self.external_id:
                return self.tombstone
            for needle in self.needles:
                value = re.sub(re.escape(needle), ERASED_TEXT, value, flags=re.IGNORECASE)
        return value

    def matches(self, field: str) -> Q:
        query = Q(**{f"{field}__icontains": self.external_id})
        for needle in self.needles:
            query |= Q(**{f"{field}__icontains": needle})
        return query


def _idempotency_records_scrub(client_id: Any, rewrite: _Rewrite) -> int:
    """Stored responses (kept IDEMPOTENCY_TTL_SECONDS) that name them: replays answer with the
    tombstone id and without their contact values."""
    changed = []
    for record in IdempotencyRecord.objects.filter(rewrite.matches("response_body"), client_id=client_id):
        body = rewrite(record.response_body)
        if body != record.response_body:
            record.response_body = body
            changed.append(record)
    IdempotencyRecord.objects.bulk_update(changed, ["response_body"], batch_size=500)
    return len(changed)


def _audit_rows_rewrite(client_id: Any, rewrite: _Rewrite) -> int:
    """Audit rows are append-only (a trigger refuses UPDATE) except inside a transaction that
    sets notifyhub.audit_allow_update, as this one does for these statements only.

    Rows about them get the tombstone id; in `changes` their id becomes the tombstone, their
    contact values go, and preference rows lose the before/after values. Rows of people
    reaching public endpoints (their STOP text, their unsubscribe click) lose the masked
    address, IP and user agent. Multi-recipient sends listing them get the tombstone in the
    list (found by JSON containment among the client's sends: erasure is rare, this is a scan
    of the client's multi-recipient send rows)."""
    about = AuditLog.objects.filter(client_id=client_id, recipient_external_id=rewrite.external_id)
    listing = AuditLog.objects.filter(
        Q(changes__recipients__contains=[rewrite.external_id])
        | Q(changes__recipients__first__contains=[rewrite.external_id]),
        client_id=client_id, action="notification.send", recipient_external_id="")
    changed: list[AuditLog] = []
    for row in (about | listing).order_by("id").iterator(chunk_size=1000):
        drop = ("before", "after") if row.action.startswith("preference.") else ()
        row.changes = rewrite(row.changes, drop=drop)
        if row.recipient_external_id == rewrite.external_id:
            row.recipient_external_id = rewrite.tombstone
        if row.actor_type == ActorType.INBOUND:
            row.actor_display = f"{row.actor_display.split(':', 1)[0]}:{ERASED_TEXT}"
            row.ip, row.user_agent = None, ""
        changed.append(row)
    # SET LOCAL lasts until the transaction ends (a rollback undoes it too): turned off again
    # right after, so nothing else in this transaction may update audit rows.
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL notifyhub.audit_allow_update = 'on'")
    AuditLog.objects.bulk_update(
        changed, ["recipient_external_id", "changes", "actor_display", "ip", "user_agent"],
        batch_size=500)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL notifyhub.audit_allow_update = 'off'")
    return len(changed)


def _admin_log_rewrite(old: Recipient, device_ids: list[str], tombstone: Recipient) -> int:
    """The admin's history names objects by their str(): the recipient's external id, the end
    of a device token."""
    recipients = LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(Recipient),
                                         object_id=str(old.pk))
    devices = LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(Device),
                                      object_id__in=device_ids)
    return (recipients.update(object_repr=tombstone.external_id)
            + devices.update(object_repr="device of an erased recipient"))


def _caches_forget(recipient_id: str) -> None:
    """Their cached preferences and frequency-cap counters (Redis)."""
    cache_forget([recipient_id])
    pattern = cap_key(recipient_id=recipient_id, category="*", period="*", window="*")
    try:
        client = client_from_settings()
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    except (redis.RedisError, OSError) as exc:
        # The counters hold delivery ids only and expire with their window.
        logger.warning("erasure: could not delete frequency-cap counters: %s", exc)
