"""The suppression list: addresses a channel must not send to again.

Addresses are stored encrypted and matched by their keyed hash (apps/core/crypto.py), so an
email suppressed as `Bob@Example.com` also blocks `bob@example.com`.

Consent opt-outs live here too (issue 9): a STOP texted from a number (reason `stop_keyword`)
and an unsubscribe link (reason `unsubscribed`, for one category or the whole channel) are kept
per client, channel and address, so they block every recipient record that carries the
address, and survive the recipient's erasure (the hash stays). Dispatch checks them with
`suppressed_deliveries`, one query per chunk."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import Q

from apps.core.crypto import pii_hash
from apps.core.logging import redact_pii

from .models import Suppression

# Consent opt-outs: lifted by an opt-in (START, or the client opting the stopped recipient
# back in); the other reasons (bounces, invalid numbers, complaints) never are.
REASON_STOP_KEYWORD = "stop_keyword"
REASON_UNSUBSCRIBED = "unsubscribed"
CONSENT_REASONS = frozenset({REASON_STOP_KEYWORD, REASON_UNSUBSCRIBED})
# The category of the one message confirming an opt-out (apps/preferences/confirmation.py).
# A client may use the name too: only the delivery a STOP's row names is let through.
CONFIRMATION_CATEGORY = "opt_out_confirmation"


@dataclass(frozen=True)
class SuppressionItem:
    client_id: UUID | str
    channel: str
    address: str
    reason: str
    detail: str = ""
    delivery_id: UUID | str | None = None
    category: str = ""  # "" = every category


def suppressions_add(*, items: Iterable[SuppressionItem]) -> int:
    """Adds addresses (idempotent: an address already suppressed keeps its first reason)."""
    rows = [
        Suppression(client_id=i.client_id, channel=i.channel, address=i.address,
                    reason=i.reason[:100], detail=redact_pii(i.detail[:2000]),
                    source_delivery_id=i.delivery_id, category=i.category.lower()[:50])
        for i in items if i.address
    ]
    if not rows:
        return 0
    return len(Suppression.objects.bulk_create(rows, ignore_conflicts=True))


_SUPPRESSED_SQL = f"""
SELECT client_id, channel, address_hash, category, reason, confirmation_delivery_id
FROM {Suppression._meta.db_table}
WHERE client_id = ANY(%s::uuid[]) AND channel = ANY(%s::text[])
  AND address_hash = ANY(%s::text[]) AND category = ANY(%s::text[])
"""


def suppressed_deliveries(*, deliveries: Iterable[Any]) -> dict[str, str]:
    """delivery id → reason, for the deliveries whose address is suppressed on their channel,
    for every category or for their notification's. One query on the
    (client, channel, address_hash, category) unique index. `deliveries` are Delivery rows
    with `notification` loaded (dispatch's). The one confirmation of a STOP passes its own
    opt-out (the row names it), and nothing else."""
    wanted: dict[str, tuple[str, str, str, str]] = {}
    for d in deliveries:
        if d.address:
            wanted[str(d.id)] = (str(d.client_id), d.channel, pii_hash(d.address),
                                 (d.notification.category or "").lower())
    if not wanted:
        return {}
    # One statement text whatever the chunk (arrays, not IN lists): PostgreSQL and psycopg
    # parse it once per connection instead of once per task.
    with connection.cursor() as cursor:
        cursor.execute(_SUPPRESSED_SQL, [
            sorted({w[0] for w in wanted.values()}),
            sorted({w[1] for w in wanted.values()}),
            sorted({w[2] for w in wanted.values()}),
            sorted({"", *(w[3] for w in wanted.values())}),
        ])
        rows = cursor.fetchall()
    found: dict[tuple[str, str, str], list[tuple[str, str, str]]] = defaultdict(list)
    for row_client, row_channel, row_hash, row_category, row_reason, confirmation in rows:
        found[(str(row_client), row_channel, row_hash)].append(
            (row_category, row_reason, str(confirmation) if confirmation else ""))
    out: dict[str, str] = {}
    for delivery_id, (client_id, channel, address_hash, category) in wanted.items():
        for row_category, reason, named in found.get((client_id, channel, address_hash), ()):
            if row_category and row_category != category:
                continue
            if named == delivery_id and reason in CONSENT_REASONS:
                continue
            out[delivery_id] = reason
            break
    return out


def confirmation_deliveries(*, delivery_ids: Collection[str]) -> set[str]:
    """Of these deliveries, the ones a consent opt-out names as its one confirmation (one
    query on a small partial index; dispatch asks only for deliveries of that category)."""
    if not delivery_ids:
        return set()
    return {str(i) for i in Suppression.objects.filter(
        confirmation_delivery_id__in=list(delivery_ids)).values_list(
        "confirmation_delivery_id", flat=True)}


def consent_opt_out_add(
    *, client_ids: Collection[UUID | str], channel: str, address: str, reason: str,
    category: str = "", detail: str = "",
) -> list[str]:
    """Suppresses the address on the channel (for `category`, "" = all) for each client, as a
    consent opt-out. Returns the clients for which it is new (a repeated STOP: none); two
    concurrent calls for one address are serialised, so only one of them sees it new."""
    if not address or not client_ids:
        return []
    address_hash = pii_hash(address)
    category = category.lower()[:50]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 9))",
                           [f"suppression:{channel}:{address_hash}:{category}"])
        existing = {str(c) for c in Suppression.objects.filter(
            client_id__in=list(client_ids), channel=channel, address_hash=address_hash,
            category=category).values_list("client_id", flat=True)}
        new = [str(c) for c in dict.fromkeys(str(c) for c in client_ids) if c not in existing]
        suppressions_add(items=[
            SuppressionItem(client_id=c, channel=channel, address=address, reason=reason,
                            detail=detail, category=category) for c in new])
    return new


def consent_opt_out_lift(*, items: Iterable[tuple[UUID | str, str, str, str | None]]) -> int:
    """Lifts consent opt-outs: (client id, channel, address, category) — category None = the
    channel's opt-out and every category's. Other suppressions stay. One statement."""
    query = Q()
    for client_id, channel, address, category in items:
        if not address:
            continue
        one = Q(client_id=client_id, channel=channel, address_hash=pii_hash(address))
        if category is not None:
            one &= Q(category=category.lower())
        query |= one
    if not query:
        return 0
    deleted, _ = Suppression.objects.filter(query, reason__in=CONSENT_REASONS).delete()
    return deleted
