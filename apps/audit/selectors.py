"""Reads of the audit log: a client's own rows (API) and support's search (admin)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from apps.clients.models import Client

from .models import AuditLog


def audit_logs_for_client(
    *, client: Client, start: datetime | None = None, end: datetime | None = None,
    action: str | None = None, recipient: str | None = None,
    notification_id: uuid.UUID | None = None,
) -> QuerySet[AuditLog]:
    """The client's rows with `start <= created_at < end`; served by the (client, created_at)
    index, or the recipient / notification index when those are given."""
    qs = AuditLog.objects.filter(client_id=client.pk)
    if start is not None:
        qs = qs.filter(created_at__gte=start)
    if end is not None:
        qs = qs.filter(created_at__lt=end)
    if action:
        qs = qs.filter(action=action)
    if recipient:
        qs = qs.filter(recipient_external_id=recipient)
    if notification_id is not None:
        qs = qs.filter(notification_id=notification_id)
    return qs


SEARCH_PREFIXES = ("recipient", "notification", "actor", "action", "object", "request")
# A request that sent more than this many notifications (bulk) lists its first ones only.
REQUEST_NOTIFICATIONS_LIMIT = 1000


def notification_ids_for_request(request_id: str, *,
                                 limit: int = REQUEST_NOTIFICATIONS_LIMIT) -> list[uuid.UUID]:
    """The notifications a request sent (its `notification.send` rows; the request id is
    the client's `X-Request-Id` or the one we answered with): one index lookup."""
    request_id = request_id.strip()
    if not request_id or len(request_id) > 64:
        return []
    rows = (AuditLog.objects.filter(request_id=request_id, action="notification.send",
                                    notification_id__isnull=False)
            .order_by("created_at").values_list("notification_id", flat=True)[:limit])
    return [notification_id for notification_id in rows if notification_id is not None]


def _actor_ids(term: str) -> list[str]:
    """Ids of the users with this username and of the API key with this prefix."""
    from django.contrib.auth import get_user_model

    from apps.clients.models import ApiKey

    users = get_user_model()._default_manager.filter(username=term).values_list("pk", flat=True)
    keys = ApiKey.objects.filter(prefix=term).values_list("pk", flat=True)
    return [str(pk) for pk in [*users, *keys]]


def audit_search_q(term: str) -> Q:
    """Support's search box, exact matches only (each one an index lookup):

    `recipient:<external id>`, `notification:<uuid>`, `actor:<username, key prefix or id>`,
    `action:<notification.send>`, `object:<id>`, `request:<request id>`; a bare UUID matches
    the notification, the object, the actor id or the request id; any other word a recipient
    id, an action, an actor or a request id."""
    term = term.strip()
    prefix, sep, value = term.partition(":")
    if sep and prefix in SEARCH_PREFIXES and value.strip():
        value = value.strip()
        if prefix == "recipient":
            return Q(recipient_external_id=value)
        if prefix == "notification":
            as_uuid = _uuid(value)
            return Q(notification_id=as_uuid) if as_uuid else Q(pk__in=[])
        if prefix == "actor":
            return Q(actor_id__in=[value, *_actor_ids(value)])
        if prefix == "action":
            return Q(action=value)
        if prefix == "request":
            return Q(request_id=value)
        return Q(object_id=value)
    as_uuid = _uuid(term)
    if as_uuid is not None:  # our generated request ids are UUIDs in hex, too
        return (Q(notification_id=as_uuid) | Q(object_id=str(as_uuid)) | Q(actor_id=str(as_uuid))
                | Q(request_id=term))
    return (Q(recipient_external_id=term) | Q(action=term)
            | Q(actor_id__in=[term, *_actor_ids(term)]) | Q(request_id=term))


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
