from __future__ import annotations

from collections.abc import Collection
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


# The (encrypted) address fields each channel reads (Recipient.address_for).
CHANNEL_ADDRESS_FIELDS = {"email": ("email",), "sms": ("phone",), "whatsapp": ("whatsapp", "phone"),
                          "push": (), "in_app": ()}


def recipients_by_external_id(
    *, client: Client, external_ids: list[str], channels: Collection[str] | None = None
) -> dict[str, Recipient]:
    """external id → Recipient. With `channels`, only the addresses those channels use are
    loaded (each costs a decryption); reading another one would cost a query per recipient."""
    rows = Recipient.objects.filter(client=client, external_id__in=external_ids)
    if channels is not None:
        wanted = {name for c in channels for name in CHANNEL_ADDRESS_FIELDS.get(c, ())}
        unused = [name for name in ("email", "phone", "whatsapp") if name not in wanted]
        if unused:
            rows = rows.defer(*unused)
    return {r.external_id: r for r in rows}


def active_device_tokens(*, recipient_ids: list[UUID | str]) -> dict[str, list[str]]:
    """recipient id → its active push tokens (newest first), in one query."""
    out: dict[str, list[str]] = {}
    if not recipient_ids:  # a chunk without push (most): no query built
        return out
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
