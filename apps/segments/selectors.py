"""Reads for segments: lookups by id or key, and the segment's recipients as ONE query."""

from __future__ import annotations

import contextlib
import uuid

from django.db.models import Q, QuerySet

from apps.clients.models import Client
from apps.core.exceptions import NotFound
from apps.recipients.models import Recipient

from .criteria import definition_q
from .models import Segment

PREVIEW_SIZE = 20


def segment_find(*, client: Client, ref: str) -> Segment | None:
    """A client's segment by id or key, or None."""
    query = Q(key=ref)
    with contextlib.suppress(ValueError):
        query |= Q(id=uuid.UUID(str(ref)))
    return Segment.objects.filter(query, client=client).first()


def segment_get(*, client: Client, ref: str) -> Segment:
    """A client's segment by id or key; 404 otherwise (also for another client's id)."""
    segment = segment_find(client=client, ref=ref)
    if segment is None:
        raise NotFound(f"Segment '{ref}' not found.")
    return segment


def segment_list(*, client: Client) -> QuerySet[Segment]:
    return Segment.objects.filter(client=client)


def segment_queryset(*, segment: Segment) -> QuerySet[Recipient]:
    """The recipients matching the segment now: one SQL statement, always within the
    segment's client. Lazy: filter, count or slice it further as needed."""
    return Recipient.objects.filter(client_id=segment.client_id).filter(
        definition_q(segment.definition)
    )


def segment_count(*, segment: Segment) -> int:
    return segment_queryset(segment=segment).count()


def segment_preview(*, segment: Segment, limit: int = PREVIEW_SIZE) -> list[Recipient]:
    return list(segment_queryset(segment=segment).order_by("external_id")[:limit])
