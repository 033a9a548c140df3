"""Bulk send: many send requests accepted together, all or nothing.

The same rules as `services.notification_send`, checked for every item before anything is
kept, with each failure named by its item (`notifications[3].template_id`). The work is done
per statement, not per item: templates and their locale versions are read once per template,
inline recipients of all items are upserted in one `recipients_upsert`, and notifications,
deliveries, "accepted" events and the `notification.send` audit rows are each written with one
COPY. Deliveries are published after commit, like a single send.

10,000 single-recipient items take about 5 s end to end (tests/notifications/api/
bulk_timing.py): validation ~1 s, the recipient upsert ~1.3 s, the COPYs with the audit rows
~1.3 s, publishing ~0.5 s.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Q
from django.db.models.fields import AutoFieldMixin
from django.utils import timezone
from psycopg.types.json import Jsonb

from apps.audit.context import current_context
from apps.audit.models import AuditLog
from apps.audit.services import notification_send_entry
from apps.clients.models import Client, key_mode
from apps.core.crypto import encrypt, pii_batch
from apps.core.encrypted_fields import EncryptedMixin, PIIHashField
from apps.core.exceptions import ApplicationError
from apps.recipients.models import Recipient
from apps.recipients.selectors import active_device_tokens, recipients_by_external_id
from apps.recipients.services import recipients_upsert
from apps.templates.locales import locale_key
from apps.templates.models import Template, TemplateActiveVersion, TemplateVersion
from apps.templates.selectors import pick_version

from .channels.registry import supported_channels
from .enqueue import deliveries_enqueue
from .models import Delivery, DeliveryEvent, DeliveryStatus, Notification, NotificationStatus
from .services import _check_version, local_due_time


@dataclass
class BulkAccepted:
    notifications: list[Notification]  # in item order, saved
    deliveries: int = 0
    # (channel, priority) → deliveries accepted
    by_channel: dict[tuple[str, str], int] = field(default_factory=dict)


def _field(index: int, name: str) -> str:
    return f"notifications[{index}].{name}" if name else f"notifications[{index}]"


class _Errors:
    """Failures of one validation stage: the first item's code, every item's fields."""

    def __init__(self) -> None:
        self.code = ""
        self.message = ""
        self.fields: dict[str, list[str]] = {}

    def add(self, index: int, error: ApplicationError) -> None:
        if not self.code:
            self.code, self.message = error.code, error.message
        for name, messages in (error.fields or {"": [error.message]}).items():
            self.fields.setdefault(_field(index, name), []).extend(messages)

    def raise_any(self) -> None:
        if self.fields:
            items = len({name.split("]", 1)[0] for name in self.fields})
            message = self.message if items == 1 else f"{self.message} ({items} items)"
            raise ApplicationError(message, code=self.code, fields=self.fields)


def _templates(client: Client, refs: set[str]) -> dict[str, Template]:
    """ref (key or UUID string) → the client's template, with its active version."""
    ids = set()
    for ref in refs:
        with contextlib.suppress(ValueError):
            ids.add(uuid.UUID(ref))
    rows = Template.objects.select_related("active_version").filter(
        Q(key__in=refs) | Q(id__in=ids), client=client
    )
    by_ref: dict[str, Template] = {}
    for template in rows:
        by_ref[template.key] = template
        by_ref[str(template.id)] = template
    for ref in refs:  # a UUID written in another case or without dashes
        with contextlib.suppress(ValueError):
            match = by_ref.get(str(uuid.UUID(ref)))
            if match is not None:
                by_ref.setdefault(ref, match)
    return by_ref


def _versions_by_locale(templates: list[Template]) -> dict[Any, dict[str, TemplateVersion]]:
    """template id → {locale key → active version} for all templates in one query."""
    out: dict[Any, dict[str, TemplateVersion]] = defaultdict(dict)
    pointers = TemplateActiveVersion.objects.filter(template__in=templates).select_related("version")
    for pointer in pointers:
        out[pointer.template_id][locale_key(pointer.locale)] = pointer.version
    return out


def _converter(field: models.Field[Any, Any], now: datetime) -> Callable[[Any], Any]:
    if isinstance(field, EncryptedMixin):
        return lambda value: encrypt(value) if value else value
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return lambda value: value or now
    if isinstance(field, models.JSONField):
        dumps = functools.partial(json.dumps, cls=field.encoder)
        return lambda value: Jsonb(value, dumps=dumps)
    return lambda value: value.value if isinstance(value, enum.Enum) else value


def copy_insert(
    model: type[models.Model], rows: Iterable[models.Model | Mapping[str, Any]], now: datetime
) -> int:
    """Inserts rows with one COPY: several times cheaper than bulk_create's INSERT for tens of
    thousands of rows (no per-value SQL compilation, no model instance needed).

    A row is an unsaved instance or a mapping of attnames (`delivery_id`, not `delivery`); a
    column a mapping leaves out gets the field's default. auto_now/auto_now_add columns get
    the row's value, else `now`; an auto-increment primary key is left to the database;
    encrypted fields are encrypted (apps/core/encrypted_fields.py).
    Returns the row count."""
    fields = [f for f in model._meta.concrete_fields if not isinstance(f, AutoFieldMixin)]
    if any(isinstance(f, PIIHashField) for f in fields):
        raise NotImplementedError(f"copy_insert does not compute the hashes of {model.__name__}.")
    convert = [(f.attname, f.get_default, _converter(f, now)) for f in fields]
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    count = 0
    with connection.cursor() as cursor, cursor.cursor.copy(
        f"COPY {table} ({columns}) FROM STDIN"  # table and column names come from the model
    ) as copy:
        for row in rows:
            values = vars(row) if isinstance(row, models.Model) else row
            copy.write_row([
                conv(values[attname] if attname in values else default())
                for attname, default, conv in convert
            ])
            count += 1
    return count


def _resolve_recipients(
    client: Client, items: Sequence[Mapping[str, Any]], channels_of: Sequence[Sequence[str]],
    errors: _Errors,
) -> dict[str, Recipient]:
    """Upserts every inline recipient of every item at once; reads the ids. external id →
    Recipient; an unknown id is recorded against its item and position."""
    inline = [r for item in items for r in item["recipients"] if isinstance(r, dict)]
    known = recipients_upsert(client=client, items=inline) if inline else {}
    wanted = {r for item in items for r in item["recipients"] if isinstance(r, str) and r not in known}
    if wanted:
        channels = {c for channels in channels_of for c in channels}
        known.update(recipients_by_external_id(client=client, external_ids=list(wanted),
                                               channels=channels))
    for index, item in enumerate(items):
        for position, r in enumerate(item["recipients"]):
            if isinstance(r, str) and r not in known:
                errors.add(index, ApplicationError(
                    "Unknown recipient.", code="unknown_recipient",
                    fields={f"recipients[{position}]": [
                        "Unknown recipient id; create it with PUT /api/v1/recipients/{id}."]}))
    return known


@transaction.atomic
@pii_batch()  # each address encrypted once for the recipient and its deliveries
def notifications_send_bulk(
    *, client: Client, items: Sequence[Mapping[str, Any]], is_test: bool = False
) -> BulkAccepted:
    """Accepts every item (validated send bodies, as NotificationSendSerializer gives them) or
    none: raises the first failing rule's ApplicationError naming every item that breaks it.
    `is_test` marks them all as a test key's (sandbox only), as notification_send does."""
    now = timezone.now()

    # 1. Schedules that cannot be right whatever the data.
    errors = _Errors()
    for index, item in enumerate(items):
        if item.get("local_send_time") is not None and item.get("scheduled_at") is not None:
            errors.add(index, ApplicationError(
                "Use either scheduled_at or local_send_time, not both.", code="conflicting_schedule",
                fields={"local_send_time": ["Not allowed together with scheduled_at."]}))
    errors.raise_any()

    # 2. Templates, once per template.
    templates = _templates(client, {str(item["template_id"]) for item in items})
    for index, item in enumerate(items):
        template = templates.get(str(item["template_id"]))
        if template is None:
            errors.add(index, ApplicationError(
                f"Unknown template '{item['template_id']}'.", code="unknown_template",
                fields={"template_id": ["No template with this id or key."]}))
        elif template.active_version is None:
            errors.add(index, ApplicationError(
                f"Template '{template.key}' has no published version.",
                code="template_not_published", fields={"template_id": ["Publish a version first."]}))
    errors.raise_any()

    # 3. Channels with a configured provider.
    available = supported_channels(mode=key_mode(is_test=is_test))
    channels_of: list[list[str]] = []
    for index, item in enumerate(items):
        template = templates[str(item["template_id"])]
        channels = list(dict.fromkeys(item.get("channels") or template.channels))
        channels_of.append(channels)
        unsupported = [c for c in channels if c not in available]
        if not channels or unsupported:
            errors.add(index, ApplicationError(
                "No provider is configured for a requested channel.", code="channel_not_supported",
                fields={"channels": [f"Not available: {', '.join(unsupported) or 'none given'}. "
                                     f"Available: {', '.join(available)}."]}))
    errors.raise_any()

    for index, item in enumerate(items):
        scheduled_at = item.get("scheduled_at")
        if scheduled_at is not None and scheduled_at < now - timedelta(seconds=5):
            errors.add(index, ApplicationError(
                "scheduled_at is in the past.", code="schedule_in_past",
                fields={"scheduled_at": ["Must be in the future."]}))
    errors.raise_any()

    # 4. Recipients: one upsert and one read for all items (rolled back if anything fails).
    known = _resolve_recipients(client, items, channels_of, errors)
    errors.raise_any()
    resolved_of: list[list[tuple[int, Recipient]]] = []  # per item: (request position, recipient)
    for item in items:
        ordered: dict[str, tuple[int, Recipient]] = {}
        for position, r in enumerate(item["recipients"]):
            external_id = str(r["id"] if isinstance(r, dict) else r)
            ordered.setdefault(external_id, (position, known[external_id]))
        resolved_of.append(list(ordered.values()))

    # 5. Each recipient's locale version; every pinned version has content and variables.
    by_locale = _versions_by_locale(list({t.id: t for t in templates.values()}.values()))
    picked: dict[tuple[Any, str], TemplateVersion] = {}
    checked: dict[tuple[Any, tuple[str, ...], frozenset[str]], ApplicationError | None] = {}
    pinned_of: list[dict[Any, TemplateVersion]] = []
    for index, item in enumerate(items):
        template = templates[str(item["template_id"])]
        version = template.active_version
        assert version is not None
        pinned: dict[Any, TemplateVersion] = {}
        for _, recipient in resolved_of[index]:
            cache_key = (template.id, recipient.locale)
            if cache_key not in picked:
                picked[cache_key] = pick_version(
                    by_locale.get(template.id, {}), template.default_locale, recipient.locale
                ) or version
            pinned[recipient.id] = picked[cache_key]
        pinned_of.append(pinned)
        names = frozenset(item.get("variables") or {})
        for candidate in {v.id: v for v in [version, *pinned.values()]}.values():
            check_key = (candidate.id, tuple(channels_of[index]), names)
            if check_key not in checked:
                try:
                    _check_version(template.key, candidate, channels_of[index],
                                   dict.fromkeys(names))
                    checked[check_key] = None
                except ApplicationError as exc:
                    checked[check_key] = exc
            failure = checked[check_key]
            if failure is not None:
                errors.add(index, failure)
                break
    errors.raise_any()

    # 6. Every recipient has an address for every requested channel.
    push_ids: list[Any] = [
        r.id for i, rs in enumerate(resolved_of) if "push" in channels_of[i] for _, r in rs
    ]
    if push_ids:
        with_devices = active_device_tokens(recipient_ids=push_ids)
        for recipient in known.values():
            recipient.has_active_device = str(recipient.id) in with_devices  # type: ignore[attr-defined]
    for index, resolved in enumerate(resolved_of):
        for position, recipient in resolved:
            absent = [c for c in channels_of[index] if not recipient.address_for(c)]
            if absent:
                errors.add(index, ApplicationError(
                    "A recipient has no address for a requested channel.",
                    code="recipient_missing_address",
                    fields={f"recipients[{position}]": [f"No address for channel: {', '.join(absent)}."]}))
    errors.raise_any()

    # 7. Local send times: one due time per recipient.
    local_due_of: list[dict[Any, datetime]] = []
    for index, item in enumerate(items):
        at, on = item.get("local_send_time"), item.get("local_send_date")
        due: dict[Any, datetime] = {}
        if at is not None:
            due = {r.id: local_due_time(r.timezone, at, on, now) for _, r in resolved_of[index]}
            if on is not None and any(d <= now for d in due.values()):
                errors.add(index, ApplicationError(
                    "For some recipients that local time has already passed.",
                    code="schedule_in_past", fields={"local_send_date": ["Pick a later date."]}))
        local_due_of.append(due)
    errors.raise_any()

    # 8. Write: notifications, deliveries, events — one bulk insert each.
    requeue_lease = now + timedelta(seconds=settings.RELAY_REQUEUE_AFTER_SECONDS)
    # Every row gets its own creation time, a microsecond apart in item order: lists page by
    # (created_at, id) with a cursor, which cannot step over thousands of equal timestamps,
    # and a notification's deliveries read back in request order, as after a single send.
    tick = iter(range(10**9))

    def stamp() -> datetime:
        return now + timedelta(microseconds=next(tick))

    notifications: list[Notification] = []
    deliveries: list[dict[str, Any]] = []
    publish: list[tuple[str, str]] = []
    by_channel: dict[tuple[str, str], int] = defaultdict(int)
    for index, item in enumerate(items):
        template = templates[str(item["template_id"])]
        version = template.active_version
        assert version is not None
        local_due = local_due_of[index]
        scheduled_at = min(local_due.values()) if local_due else item.get("scheduled_at")
        scheduled = scheduled_at is not None and scheduled_at > now
        priority = item.get("priority") or "normal"
        notification = Notification(
            client=client,
            template_version=version,
            variables=item.get("variables") or {},
            channels=channels_of[index],
            priority=priority,
            category=item.get("category") or template.category,
            metadata=item.get("metadata") or {},
            scheduled_at=scheduled_at,
            status=NotificationStatus.SCHEDULED if scheduled else NotificationStatus.PENDING,
            recipient_count=len(resolved_of[index]),
            is_test=is_test,
        )
        notification.created_at = notification.updated_at = stamp()
        notifications.append(notification)
        status = DeliveryStatus.SCHEDULED.value if scheduled else DeliveryStatus.PENDING.value
        for _, recipient in resolved_of[index]:
            due_at = (local_due.get(recipient.id, scheduled_at) if scheduled else None)
            own_version = pinned_of[index][recipient.id]
            for channel in channels_of[index]:
                delivery_id = uuid.uuid4()
                # Rows as the model would store them (see copy_insert); same values as
                # notification_send's Delivery(...).
                deliveries.append({
                    "id": delivery_id, "notification_id": notification.id, "client_id": client.id,
                    "recipient_id": recipient.id, "channel": channel, "priority": priority,
                    "status": status, "address": recipient.address_for(channel),
                    "due_at": due_at, "lease_until": due_at or requeue_lease,
                    "template_version_id": None if own_version.id == version.id else own_version.id,
                    "is_test": is_test, "created_at": (created := stamp()), "updated_at": created,
                })
                by_channel[(channel, priority)] += 1
                if not scheduled:
                    publish.append((str(delivery_id), priority))
    copy_insert(Notification, notifications, now)
    copy_insert(Delivery, deliveries, now)
    copy_insert(DeliveryEvent, (
        {"delivery_id": d["id"], "status": d["status"], "event": "accepted", "occurred_at": now}
        for d in deliveries
    ), now)
    for notification in notifications:
        notification._state.adding = False
    # One `notification.send` audit row per notification, as a single send writes.
    context = current_context()
    copy_insert(AuditLog, (
        notification_send_entry(notification=n, template=templates[str(item["template_id"])],
                                recipients=[r for _, r in resolved_of[index]]).row(context)
        for index, (n, item) in enumerate(zip(notifications, items, strict=True))
    ), now)
    if publish:
        transaction.on_commit(lambda: deliveries_enqueue(items=publish))
    return BulkAccepted(notifications=notifications, deliveries=len(deliveries),
                        by_channel=dict(by_channel))
