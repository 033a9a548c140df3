"""Writes for recipients: one upsert used by the recipients API and inline send recipients."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction

from apps.clients.models import Client

from .models import Recipient

RECIPIENT_FIELDS = ("email", "phone", "whatsapp", "locale", "timezone", "attributes")


@transaction.atomic
def recipients_upsert(
    *, client: Client, items: Iterable[Mapping[str, Any]]
) -> dict[str, Recipient]:
    """Creates or updates recipients by external id, in bulk.

    Each item has `id` (the external id) and any of RECIPIENT_FIELDS; fields not given keep
    their stored value. Returns external id → Recipient. Two statements whatever the count.
    """
    wanted: dict[str, dict[str, Any]] = {}
    for item in items:
        merged = wanted.setdefault(str(item["id"]), {})
        merged.update({k: v for k, v in item.items() if k in RECIPIENT_FIELDS})
    if not wanted:
        return {}
    existing = {
        r.external_id: r
        for r in Recipient.objects.filter(client=client, external_id__in=list(wanted))
    }
    rows = []
    for external_id, fields in wanted.items():
        row = existing.get(external_id) or Recipient(client=client, external_id=external_id)
        for name, value in fields.items():
            setattr(row, name, value if value is not None else "")
        rows.append(row)
    saved = Recipient.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["client", "external_id"],
        update_fields=[*RECIPIENT_FIELDS, "updated_at"],
    )
    # bulk_create with update_conflicts returns the rows' primary keys on PostgreSQL; for rows
    # that already existed the stored pk wins, so read them back to be exact.
    if any(r.external_id not in existing for r in saved):
        fresh = Recipient.objects.filter(client=client, external_id__in=list(wanted))
        return {r.external_id: r for r in fresh}
    return {r.external_id: r for r in saved}


def recipient_upsert(*, client: Client, external_id: str, data: Mapping[str, Any]) -> Recipient:
    return recipients_upsert(client=client, items=[{**data, "id": external_id}])[external_id]
