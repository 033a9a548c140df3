"""The suppression list: addresses a channel must not send to again."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from django.db.models import Q

from .models import Suppression


@dataclass(frozen=True)
class SuppressionItem:
    client_id: UUID | str
    channel: str
    address: str
    reason: str
    detail: str = ""
    delivery_id: UUID | str | None = None


def suppressions_add(*, items: Iterable[SuppressionItem]) -> int:
    """Adds addresses (idempotent: an address already suppressed keeps its first reason)."""
    rows = [
        Suppression(client_id=i.client_id, channel=i.channel, address=i.address,
                    reason=i.reason[:100], detail=i.detail[:2000], source_delivery_id=i.delivery_id)
        for i in items if i.address
    ]
    if not rows:
        return 0
    return len(Suppression.objects.bulk_create(rows, ignore_conflicts=True))


def suppressed_addresses(*, keys: Iterable[tuple[UUID | str, str, str]]) -> dict[tuple[str, str, str], str]:
    """(client id, channel, address) → reason, for those suppressed; one query."""
    keys = list(keys)
    if not keys:
        return {}
    query = Q()
    for client_id, channel, address in keys:
        query |= Q(client_id=client_id, channel=channel, address=address)
    return {
        (str(s.client_id), s.channel, s.address): s.reason
        for s in Suppression.objects.filter(query).only("client_id", "channel", "address", "reason")
    }
