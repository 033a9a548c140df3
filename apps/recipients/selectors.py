from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet

from apps.clients.models import Client
from apps.core.exceptions import NotFound

from .models import Device, Recipient


def recipient_get(*, client: Client, external_id: str) -> Recipient:
    recipient = Recipient.objects.filter(client=client, external_id=external_id).first()
    if recipient is None:
        raise NotFound(f"Recipient '{external_id}' not found.")
    return recipient


def recipients_by_external_id(*, client: Client, external_ids: list[str]) -> dict[str, Recipient]:
    return {
        r.external_id: r
        for r in Recipient.objects.filter(client=client, external_id__in=external_ids)
    }


def active_device_tokens(*, recipient_ids: list[UUID | str]) -> dict[str, list[str]]:
    """recipient id → its active push tokens (newest first), in one query."""
    out: dict[str, list[str]] = {}
    rows = (
        Device.objects.filter(recipient_id__in=recipient_ids, is_active=True)
        .order_by("-created_at")
        .values_list("recipient_id", "token")
    )
    for recipient_id, token in rows:
        out.setdefault(str(recipient_id), []).append(token)
    return out


def devices_for(*, recipient: Recipient) -> QuerySet[Device]:
    return Device.objects.filter(recipient=recipient)
