"""Publishing deliveries to their priority queue (the fast path; the relay sweeper is the net)."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from apps.core.queues import Priority
from apps.core.tasks import task_publish

from .models import Delivery, DeliveryStatus

logger = logging.getLogger(__name__)

DISPATCH_TASK = "notifications.deliveries_dispatch_task"
_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def chunked(ids: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def deliveries_enqueue(
    *, items: Iterable[tuple[str, str]], countdown: float | None = None, mark_queued: bool = True,
    prepaid: dict[str, int] | None = None,
) -> int:
    """Publishes (delivery id, priority) pairs: critical one per task, others in chunks, all
    in one round trip to the broker (one connection, the messages sent back to back).

    `prepaid`: provider tokens (account → count) the deliveries booked before a deferral,
    passed to their task (call it with one message's worth of deliveries).

    `mark_queued` moves the published `pending` deliveries to `queued` (one UPDATE). The accept
    path does not: its deliveries were written `pending` with the relay sweeper's lease
    (RELAY_REQUEUE_AFTER_SECONDS), which already re-publishes a lost message, and the worker's
    claim takes `pending` as it takes `queued`.

    Never raises for a broker problem: what is not published has its lease ended at once
    (at its countdown's end for a retry), so the relay sweeper's first run after the broker is
    back re-publishes it, instead of after RELAY_REQUEUE_AFTER_SECONDS.
    Returns the number of deliveries published.
    """
    by_priority: dict[str, list[str]] = defaultdict(list)
    for delivery_id, priority in items:
        by_priority[priority].append(str(delivery_id))
    published: list[str] = []
    failed: list[str] = []
    for priority, ids in by_priority.items():
        size = 1 if priority == Priority.CRITICAL else settings.DISPATCH_CHUNK_SIZE
        for chunk in chunked(ids, size):
            try:
                task_publish(
                    DISPATCH_TASK, args=[chunk],
                    kwargs={"prepaid": prepaid} if prepaid else None,
                    queue=Priority(priority).queue.value,
                    countdown=countdown,
                    retry=True,
                    retry_policy=_PUBLISH_RETRY,
                    # The queues are plain Redis lists reached through the anonymous exchange:
                    # nothing to declare per message (kombu's cached check still hashes the
                    # queue each time). The workers declare what they consume.
                    declare=[],
                    # What `celery events`/logs show instead of the saferepr of every id.
                    argsrepr=f"[{len(chunk)} delivery ids]",
                )
            except Exception:
                logger.exception("could not publish %d deliveries; the relay sweeper will", len(chunk))
                failed.extend(chunk)
                continue
            published.extend(chunk)
    if failed:
        deliveries_publish_failed(delivery_ids=failed, countdown=countdown)
    if published and countdown is None and mark_queued:
        now = timezone.now()
        Delivery.objects.filter(id__in=published, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.QUEUED,
            lease_until=now + timedelta(seconds=settings.RELAY_REQUEUE_AFTER_SECONDS),
            updated_at=now,
        )
    return len(published)


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
