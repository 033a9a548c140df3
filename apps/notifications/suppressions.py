"""The suppression list: addresses a channel must not send to again.

Addresses are stored encrypted and matched by their keyed hash (apps/core/crypto.py), so an
email suppressed as `Bob@Example.com` also blocks `bob@example.com`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from apps.core.crypto import pii_hash
from apps.core.logging import redact_pii

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
                    reason=i.reason[:100], detail=redact_pii(i.detail[:2000]),
                    source_delivery_id=i.delivery_id)
        for i in items if i.address
    ]
    if not rows:
        return 0
    return len(Suppression.objects.bulk_create(rows, ignore_conflicts=True))


def suppressed_addresses(*, keys: Iterable[tuple[UUID | str, str, str]]) -> dict[tuple[str, str, str], str]:
    """(client id, channel, address) → reason, for those suppressed; one query on the
    (client, channel, address_hash) unique index."""
    by_hash: dict[tuple[str, str, str], tuple[str, str, str]] = {}
    for client_id, channel, address in keys:
        if address:
            by_hash[(str(client_id), channel, pii_hash(address))] = (str(client_id), channel, address)
    if not by_hash:
        return {}
    rows = Suppression.objects.filter(
        client_id__in={k[0] for k in by_hash}, channel__in={k[1] for k in by_hash},
        address_hash__in={k[2] for k in by_hash},
    ).values_list("client_id", "channel", "address_hash", "reason")
    out: dict[tuple[str, str, str], str] = {}
    for client_id, channel, address_hash, reason in rows:
        key = by_hash.get((str(client_id), channel, address_hash))
        if key is not None:
            out[key] = reason
    return out
