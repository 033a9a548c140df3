"""Publishing deliveries to their priority queue (the fast path; the relay sweeper is the net)."""

from __future__ import annotations

import functools
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from apps.core.queues import Priority
from apps.core.tasks import Publication, publications_publish

from .models import Delivery, DeliveryStatus

logger = logging.getLogger(__name__)

DISPATCH_TASK = "notifications.deliveries_dispatch_task"


def chunked(ids: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def deliveries_publications(
    *, items: Iterable[tuple[str, str]], countdown: float | None = None, mark_queued: bool = True,
    prepaid: dict[str, int] | None = None,
) -> list[Publication]:
    """The dispatch task messages for (delivery id, priority) pairs: critical one per task,
    others in chunks. Publishing them (apps/core/tasks.py `publications_publish`) sends them
    back to back on one broker connection.

    `prepaid`: provider tokens (account → count) the deliveries booked before a deferral,
    passed to their task (call it with one message's worth of deliveries).

    `mark_queued`: once published, the chunk's `pending` deliveries move to `queued` (one
    UPDATE). The accept path does not: its deliveries were written `pending` with the relay
    sweeper's lease (RELAY_REQUEUE_AFTER_SECONDS), which already re-publishes a lost message,
    and the worker's claim takes `pending` as it takes `queued`.

    A chunk that cannot be published has its lease ended at once (at its countdown's end for
    a retry), so the relay sweeper's first run after the broker is back re-publishes it,
    instead of after RELAY_REQUEUE_AFTER_SECONDS.
    """
    by_priority: dict[str, list[str]] = defaultdict(list)
    for delivery_id, priority in items:
        by_priority[priority].append(str(delivery_id))
    publications: list[Publication] = []
    for priority, ids in by_priority.items():
        size = 1 if priority == Priority.CRITICAL else settings.DISPATCH_CHUNK_SIZE
        for chunk in chunked(ids, size):
            publications.append(Publication(
                DISPATCH_TASK, args=(chunk,),
                kwargs={"prepaid": prepaid} if prepaid else None,
                queue=Priority(priority).queue.value, countdown=countdown,
                what=f"{len(chunk)} deliveries",
                # The queues are plain Redis lists reached through the anonymous exchange:
                # nothing to declare per message (kombu's cached check still hashes the
                # queue each time). The workers declare what they consume. `argsrepr` is what
                # `celery events`/logs show instead of the saferepr of every id.
                options={"declare": [], "argsrepr": f"[{len(chunk)} delivery ids]"},
                on_failed=functools.partial(deliveries_publish_failed, delivery_ids=chunk,
                                            countdown=countdown),
                on_published=(functools.partial(deliveries_mark_queued, delivery_ids=chunk)
                              if countdown is None and mark_queued else None),
            ))
    return publications


def deliveries_enqueue(
    *, items: Iterable[tuple[str, str]], countdown: float | None = None, mark_queued: bool = True,
    prepaid: dict[str, int] | None = None,
) -> int:
    """Publishes `deliveries_publications(...)` now (call it after commit). Never raises for a
    broker problem. Returns the number of deliveries published."""
    publications = deliveries_publications(items=items, countdown=countdown,
                                           mark_queued=mark_queued, prepaid=prepaid)
    published = 0
    for publication in publications:
        published += len(publication.args[0]) * publications_publish([publication])
    return published


def deliveries_mark_queued(*, delivery_ids: list[str]) -> None:
    """Published `pending` deliveries are `queued`, with the sweeper's lease from now."""
    now = timezone.now()
    Delivery.objects.filter(id__in=delivery_ids, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.QUEUED,
        lease_until=now + timedelta(seconds=settings.RELAY_REQUEUE_AFTER_SECONDS),
        updated_at=now,
    )


def deliveries_publish_failed(*, delivery_ids: list[str], countdown: float | None = None) -> None:
    """Ends the lease of deliveries whose task could not be published (still waiting for one:
    pending, queued or retrying), so the next sweep re-publishes them: a few seconds after the
    broker is back. A retry or deferral keeps its due time (the claim would skip it before)."""
    now = timezone.now()
    due = now + timedelta(seconds=countdown or 0)
    try:
        Delivery.objects.filter(
            id__in=delivery_ids,
            status__in=(DeliveryStatus.PENDING, DeliveryStatus.QUEUED, DeliveryStatus.RETRYING),
        ).update(lease_until=due)
    except DatabaseError:
        # The database is down too: the lease they have still brings them back.
        logger.warning("could not mark %d unpublished deliveries for the sweeper",
                       len(delivery_ids), exc_info=True)


# Up to this many task messages are published before the request answers; a larger accept
# (tens of thousands of deliveries: hundreds of messages, ~1 ms each) publishes from a
# background thread so the 202 does not wait for the broker.
INLINE_PUBLISH_MESSAGES = 20


def deliveries_publish_accepted(*, items: list[tuple[str, str]]) -> None:
    """Publishes what an accept committed (call it after commit). Small batches are published
    at once; a large one from a background thread. Nothing is lost if the process dies
    meanwhile: the deliveries are committed `pending` with the relay sweeper's lease, which
    re-publishes them."""
    size = max(int(settings.DISPATCH_CHUNK_SIZE), 1)
    critical = [i for i in items if i[1] == Priority.CRITICAL]
    messages = len(critical) + (len(items) - len(critical) + size - 1) // size
    if messages <= INLINE_PUBLISH_MESSAGES:
        deliveries_enqueue(items=items, mark_queued=False)
        return
    thread = threading.Thread(target=_publish_in_background, args=(items,),
                              name="accept-publish", daemon=True)
    thread.start()


def _publish_in_background(items: list[tuple[str, str]]) -> None:
    try:
        deliveries_enqueue(items=items, mark_queued=False)
    except Exception:
        logger.exception("could not publish %d accepted deliveries; the relay sweeper will",
                         len(items))
    finally:
        connection.close()  # this thread's own connection (if marking failures opened one)
