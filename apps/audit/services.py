"""Writing audit rows. Services call these inside their own transaction, next to the change
they record (as Zulip's actions write RealmAuditLog), so a change and its row commit or roll
back together. The actor, IP, user agent and request id come from the context (context.py).

`audit_record` writes one row; `audit_update` one row with the fields that changed (none when
nothing did). This module knows no domain: the `audit_<noun>_<verb>` helpers that shape the
rows of the busier services live next to those services (apps/notifications/audit.py,
apps/preferences/services.py), so each call site stays one line. What goes into `changes`
passes through `scrub`: no secrets, no message bodies, no variable values, long lists cut
short.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import models

from apps.core.encrypted_fields import EncryptedMixin
from apps.core.logging import mask_address

from .context import Actor, AuditContext, current_context
from .models import AuditLog

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
