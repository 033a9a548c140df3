"""The audit rows of notifications (`notification.send`, `notification.cancel`,
`delivery.redrive`), written by this app's services in their own transaction with
apps/audit/services.py's writers. A bulk send builds its rows with `notification_send_entry`
and writes them with `audit_records([...])` after its bulk_create."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from apps.audit.models import AuditLog
from apps.audit.services import LIST_HEAD, MAX_LIST, Entry, audit_record, audit_records

from .models import Delivery, Notification

if TYPE_CHECKING:
    from apps.recipients.models import Recipient
    from apps.templates.models import Template


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
