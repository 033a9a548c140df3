"""Publishing deliveries to their priority queue (the fast path; the relay sweeper is the net)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.core.queues import Priority

from .models import Delivery, DeliveryStatus

logger = logging.getLogger(__name__)

_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def chunked(ids: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def deliveries_enqueue(
    *, items: Iterable[tuple[str, str]], countdown: float | None = None, mark_queued: bool = True,
) -> int:
    """Publishes (delivery id, priority) pairs: critical one per task, others in chunks, all
    in one round trip to the broker (one connection, the messages sent back to back).

    `mark_queued` moves the published `pending` deliveries to `queued` (one UPDATE). The accept
    path does not: its deliveries were written `pending` with the relay sweeper's lease
    (RELAY_REQUEUE_AFTER_SECONDS), which already re-publishes a lost message, and the worker's
    claim takes `pending` as it takes `queued`.

    Never raises for a broker problem: what is not published is found by the relay sweeper.
    Returns the number of deliveries published.
    """
    from .tasks import deliveries_dispatch_task

    by_priority: dict[str, list[str]] = defaultdict(list)
    for delivery_id, priority in items:
        by_priority[priority].append(str(delivery_id))
    published: list[str] = []
    for priority, ids in by_priority.items():
        size = 1 if priority == Priority.CRITICAL else settings.DISPATCH_CHUNK_SIZE
        for chunk in chunked(ids, size):
            try:
                deliveries_dispatch_task.apply_async(
                    args=[chunk],
                    queue=Priority(priority).queue.value,
                    countdown=countdown,
                    retry=True,
                    retry_policy=_PUBLISH_RETRY,
                )
            except Exception:
                logger.exception("could not publish %d deliveries; the relay sweeper will", len(chunk))
                continue
            published.extend(chunk)
    if published and countdown is None and mark_queued:
        now = timezone.now()
        Delivery.objects.filter(id__in=published, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.QUEUED,
            lease_until=now + timedelta(seconds=settings.RELAY_REQUEUE_AFTER_SECONDS),
            updated_at=now,
        )
    return len(published)
