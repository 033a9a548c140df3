from __future__ import annotations

from apps.clients.models import Client
from apps.core.exceptions import NotFound

from .models import Recipient


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
