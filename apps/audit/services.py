"""Writing audit rows. Services call these inside their own transaction, next to the change
they record (as Zulip's actions write RealmAuditLog), so a change and its row commit or roll
back together. The actor, IP, user agent and request id come from the context (context.py).

`audit_record` writes one row; `audit_update` one row with the fields that changed (none when
nothing did); the `audit_<noun>_<verb>` helpers shape the rows of the busier services so each
call site stays one line. What goes into `changes` passes through `scrub`: no secrets, no
message bodies, no variable values, long lists cut short.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import models

from apps.core.encrypted_fields import EncryptedMixin
from apps.core.logging import mask_address, mask_email, mask_phone

from .context import Actor, AuditContext, current_context
from .models import ActorType, AuditLog

if TYPE_CHECKING:
    from apps.notifications.models import Notification
    from apps.preferences.models import ConsentRecord, PreferenceProfile
    from apps.preferences.services import ChangeContext
    from apps.recipients.models import Recipient
    from apps.templates.models import Template

REDACTED = "[redacted]"
# Keys whose values never reach the audit log, at any depth.
SECRET_KEYS = frozenset({
    "key_hash", "raw_key", "api_key", "secret", "password", "token", "auth_token",
    "signing_secret", "subject", "text_body", "html_body", "sms_body", "whatsapp_body",
    "push_title", "push_body", "push_data", "body", "content",
})
SECRET_PARTS = ("secret", "password", "key_hash", "token")
# Free-form maps whose keys are kept but whose values may be personal data.
KEYS_ONLY = frozenset({"variables", "metadata", "attributes", "sample_variables"})
MAX_LIST = 50
LIST_HEAD = 20


@functools.lru_cache(maxsize=4096)  # the same few keys, once per row of a 50,000-row send
def _is_secret(key: str) -> bool:
    lowered = key.lower()
    return lowered in SECRET_KEYS or any(part in lowered for part in SECRET_PARTS)


def scrub(value: Any) -> Any:
    """A JSON-safe copy of `value` without secrets or bodies (see SECRET_KEYS, KEYS_ONLY)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if _is_secret(name):
                out[name] = REDACTED
            elif name in KEYS_ONLY and isinstance(item, Mapping):
                out[name] = sorted(str(k) for k in item)
            else:
                out[name] = scrub(item)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if len(items) > MAX_LIST:
            return {"count": len(items), "first": [scrub(i) for i in items[:LIST_HEAD]]}
        return [scrub(i) for i in items]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, models.Model):
        return str(value.pk)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _pk(value: Any) -> Any:
    return getattr(value, "pk", value)


@dataclass
class Entry:
    """One row to write (see AuditLog for the fields)."""

    action: str
    client: Any = None  # a Client or its id
    object_type: str = ""
    object_id: Any = ""
    recipient_external_id: str = ""
    notification_id: Any = None
    changes: Mapping[str, Any] = field(default_factory=dict)
    actor: Actor | None = None  # default: the context's
    scrubbed: bool = False  # `changes` is already what scrub() would make of it

    def row(self, context: AuditContext) -> AuditLog:
        return AuditLog(**self.values(context))

    def values(self, context: AuditContext) -> dict[str, Any]:
        """The row's column values by attname, without building a model instance (bulk
        writers such as the send pipeline insert these directly)."""
        actor = self.actor or context.actor
        return {
            "actor_type": actor.type, "actor_id": actor.id[:64],
            "actor_display": actor.display[:200], "client_id": _pk(self.client),
            "action": self.action, "object_type": self.object_type,
            "object_id": str(_pk(self.object_id) or "")[:64],
            "recipient_external_id": (self.recipient_external_id or "")[:200],
            "notification_id": self.notification_id,
            "changes": dict(self.changes) if self.scrubbed else scrub(dict(self.changes)),
            "ip": context.ip, "user_agent": context.user_agent,
            "request_id": context.request_id,
        }


def audit_record(*, action: str, client: Any = None, object_type: str = "", object_id: Any = "",
                 recipient_external_id: str = "", notification_id: Any = None,
                 changes: Mapping[str, Any] | None = None, actor: Actor | None = None) -> AuditLog:
    """Writes one row in the caller's transaction."""
    entry = Entry(action=action, client=client, object_type=object_type, object_id=object_id,
                  recipient_external_id=recipient_external_id, notification_id=notification_id,
                  changes=changes or {}, actor=actor)
    row = entry.row(current_context())
    row.save(force_insert=True)
    return row


def audit_records(entries: Sequence[Entry]) -> list[AuditLog]:
    """Writes several rows with one INSERT."""
    if not entries:
        return []
    context = current_context()
    return AuditLog.objects.bulk_create([e.row(context) for e in entries])


# -- updates --------------------------------------------------------------------------------


def _attnames(model: type[models.Model], fields: Iterable[str]) -> list[str]:
    return [model._meta.get_field(name).attname for name in fields]  # type: ignore[union-attr]


def audit_snapshot(obj: models.Model, fields: Iterable[str], *, from_db: bool = True) -> dict[str, Any]:
    """The stored values of `fields` (foreign keys as ids), read before a change. `from_db`
    reads the row (the instance may already carry a form's new values, as in the admin)."""
    names = _attnames(type(obj), fields)
    if from_db:
        stored = type(obj)._default_manager.filter(pk=obj.pk).values(*names).first()
        return dict(stored or {})
    return _masked(type(obj), {name: getattr(obj, name) for name in names})


def _masked(model: type[models.Model], values: dict[str, Any]) -> dict[str, Any]:
    """Encrypted fields (addresses) are recorded masked: the audit log is not encrypted."""
    encrypted = {f.attname for f in model._meta.concrete_fields if isinstance(f, EncryptedMixin)}
    return {name: mask_address(value) if name in encrypted and value else value
            for name, value in values.items()}


def changed_fields(before: Mapping[str, Any], after: models.Model) -> dict[str, Any]:
    """{"before": {...}, "after": {...}} with the fields whose value changed, or {}."""
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    for name, value in before.items():
        current = getattr(after, name)
        if current != value:
            old[name], new[name] = value, current
    if not new:
        return {}
    return {"before": _masked(type(after), old), "after": _masked(type(after), new)}


def audit_update(*, action: str, before: Mapping[str, Any], after: models.Model, client: Any,
                 object_type: str, extra: Mapping[str, Any] | None = None) -> AuditLog | None:
    """One row with what changed between the snapshot and `after`; none if nothing did."""
    changes = changed_fields(before, after)
    if not changes:
        return None
    return audit_record(action=action, client=client, object_type=object_type,
                        object_id=after.pk, changes={**(extra or {}), **changes})


# -- notifications --------------------------------------------------------------------------


def audit_notification_send(*, notification: Notification, template: Template,
                            recipients: Sequence[Recipient]) -> AuditLog:
    """One row per notification (not per delivery). The recipient is set when there is one."""
    return audit_records([notification_send_entry(notification=notification, template=template,
                                                  recipients=recipients)])[0]


def notification_send_entry(*, notification: Notification, template: Template,
                            recipients: Sequence[Recipient]) -> Entry:
    """The `notification.send` row of one notification; a bulk send writes its rows with
    `audit_records([...])` after its bulk_create."""
    return notification_send_entry_of(
        client_id=notification.client_id, notification_id=notification.pk,
        template_key=template.key, version=notification.template_version.version,
        channels=notification.channels, priority=notification.priority,
        category=notification.category, recipients=[r.external_id for r in recipients],
        variables=notification.variables, metadata=notification.metadata,
        scheduled_at=notification.scheduled_at, idempotency_key=notification.idempotency_key)


def notification_send_entry_of(
    *, client_id: Any, notification_id: Any, template_key: str, version: Any,
    channels: Sequence[str], priority: str, category: str, recipients: Sequence[str],
    variables: Mapping[str, Any] | Sequence[str] | None,
    metadata: Mapping[str, Any] | Sequence[str] | None,
    scheduled_at: dt.datetime | None, idempotency_key: str | None,
) -> Entry:
    """The `notification.send` row from the notification's stored values (an accept job's
    slices write it without the model instances; `variables` and `metadata` may be given as
    their keys). The changes are built already scrubbed
    (variable and metadata keys only, long recipient lists cut short): what scrub() makes of
    them, without walking them again."""
    recipient_list = [str(r) for r in recipients]
    listed: Any = (recipient_list if len(recipient_list) <= MAX_LIST
                   else {"count": len(recipient_list), "first": recipient_list[:LIST_HEAD]})
    return Entry(
        action="notification.send", client=client_id, object_type="notification",
        object_id=notification_id, notification_id=notification_id,
        recipient_external_id=recipient_list[0] if len(recipient_list) == 1 else "",
        changes={
            "template": template_key, "version": version,
            "channels": [str(c) for c in channels], "priority": str(priority),
            "category": category, "recipient_count": len(recipient_list),
            "recipients": listed,
            "variables": sorted(str(k) for k in (variables or {})),
            "metadata": sorted(str(k) for k in (metadata or {})),
            "scheduled_at": scheduled_at.isoformat() if scheduled_at else None,
            "idempotency_key": idempotency_key,
        },
        scrubbed=True,
    )


def _single_recipients(notification_ids: Iterable[Any]) -> dict[Any, tuple[Any, str]]:
    """notification id → (client id, the recipient's external id when it has exactly one)."""
    from apps.notifications.models import Delivery, Notification

    rows = Notification.objects.filter(id__in=list(notification_ids)).values_list(
        "id", "client_id", "recipient_count")
    found = {nid: (client_id, "") for nid, client_id, _ in rows}
    singles = [nid for nid, _, count in rows if count == 1]
    if singles:
        for nid, external_id in (Delivery.objects.filter(notification_id__in=singles)
                                 .values_list("notification_id", "recipient__external_id")
                                 .distinct()):
            found[nid] = (found[nid][0], external_id)
    return found


def audit_notification_cancel(*, notification: Notification, cancelled: int) -> AuditLog:
    _, external_id = _single_recipients([notification.pk]).get(notification.pk, (None, ""))
    return audit_record(
        action="notification.cancel", client=notification.client_id, object_type="notification",
        object_id=notification.pk, notification_id=notification.pk,
        recipient_external_id=external_id, changes={"cancelled_deliveries": cancelled},
    )


def audit_deliveries_redrive(*, rows: Sequence[Mapping[str, Any]]) -> list[AuditLog]:
    """One row per notification whose failed deliveries were re-driven."""
    by_notification: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_notification[row["notification_id"]].append(row)
    owners = _single_recipients(by_notification)
    return audit_records([
        Entry(action="delivery.redrive", client=owners.get(nid, (None, ""))[0],
              object_type="notification", object_id=nid, notification_id=nid,
              recipient_external_id=owners.get(nid, (None, ""))[1],
              changes={"deliveries": len(items), "delivery_ids": [r["id"] for r in items],
                       "previous_errors": sorted({r["error_code"] for r in items if r["error_code"]})})
        for nid, items in by_notification.items()
    ])


# -- preferences ----------------------------------------------------------------------------

# Consent sources that are people reaching public endpoints, not API keys or staff.
INBOUND_SOURCES = {"sms_keyword": mask_phone, "whatsapp_keyword": mask_phone, "link": mask_email}


def audit_preferences_change(*, profiles: Sequence[PreferenceProfile], records: Sequence[ConsentRecord],
                             recipients: Sequence[Recipient], context: ChangeContext) -> list[AuditLog]:
    """One row per recipient whose preferences changed: `preference.opt_out` or
    `preference.opt_in` when that is all that changed, `preference.update` otherwise."""
    external_ids = {str(r.pk): r.external_id for r in recipients}
    by_recipient: dict[str, list[ConsentRecord]] = defaultdict(list)
    for record in records:
        by_recipient[str(record.recipient_id)].append(record)
    actor = None
    mask = INBOUND_SOURCES.get(str(context.source))
    if mask is not None:
        address = context.actor.removeprefix("whatsapp:")
        actor = Actor(ActorType.INBOUND, "", f"{context.source}:{mask(address)}")
    entries = []
    for profile in profiles:
        changes = by_recipient.get(str(profile.recipient_id), [])
        if not changes:
            continue
        kinds = {str(r.action) for r in changes}
        action = f"preference.{kinds.pop()}" if kinds in ({"opt_out"}, {"opt_in"}) else "preference.update"
        entries.append(Entry(
            action=action, client=profile.client_id, object_type="preference",
            object_id=profile.recipient_id,
            recipient_external_id=external_ids.get(str(profile.recipient_id), ""), actor=actor,
            changes={"source": context.source, "version": profile.version, "changes": [
                {k: v for k, v in (("action", r.action), ("channel", r.channel),
                                   ("category", r.category), ("field", r.detail.get("field")),
                                   ("before", r.detail.get("before")),
                                   ("after", r.detail.get("after"))) if v not in ("", None)}
                for r in changes]},
        ))
    return audit_records(entries)
