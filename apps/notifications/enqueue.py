"""Publishing deliveries to their priority queue (the fast path; the relay sweeper is the net)."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from apps.core.queues import Priority
from apps.core.redis_clients import shared_redis
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
        # A small accept (a single send) shares a dispatch task with the sends of the same
        # window when gathering is on (see "Gathering" below).
        if len(items) - len(critical) < size:
            items = deliveries_gather(items=items)
        if items:
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


# --- Gathering single sends into shared dispatch tasks ------------------------------------------
#
# A dispatch task costs the worker and PostgreSQL about the same for one delivery as for a
# chunk of them (the Celery message, the claim, the read, the outcome statement, the status
# refresh), so a stream of single sends, one task each, costs several times per delivery what a
# bulk send does. Small accepts of a non-critical priority therefore append their delivery ids to
# a Redis list beside the broker's queues, and only the first of a window publishes a task; that
# task waits until the window closes (DISPATCH_GATHER_WINDOW_MS after the first send), takes up
# to a chunk of ids from the list, and claims and sends them together. Both steps are one Redis
# script each, so no id is ever left in the list without a task to come for it:
# - `_JOIN` appends the ids and opens the window (`SET NX`) in one step: if a window is open,
#   its task has not taken the list yet and will take these ids too;
# - `_TAKE` pops up to a chunk and, if that emptied the list, closes the window in the same
#   step: the next send opens a new window and publishes its own task. If ids are left (more
#   than a chunk in one window), the task publishes another gathering task before it sends.
# Nothing is lost if Redis loses the list or a gathering task is lost: the deliveries are
# committed `pending` with the relay sweeper's lease, as a lost task message leaves them. The
# window key expires (`GATHER_WINDOW_TTL_MS` after opening) so a lost task never stops later
# sends from being published. `critical` is never gathered (one delivery per task, at once).

GATHER_LIST_KEY = "notifyhub:dispatch:gather:{priority}"
GATHER_WINDOW_KEY = "notifyhub:dispatch:window:{priority}"
GATHER_WINDOW_TTL_MS = 2000

_JOIN = """
redis.call('RPUSH', KEYS[1], unpack(ARGV, 3))
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

_TAKE = """
local ids = redis.call('LPOP', KEYS[1], ARGV[1])
local left = redis.call('LLEN', KEYS[1])
if left == 0 then redis.call('DEL', KEYS[2]) end
if not ids then return {left} end
return {left, unpack(ids)}
"""


def gather_window_seconds() -> float:
    """The gathering window (0: off). Off unless the broker is Redis: the list lives there."""
    if settings.CELERY_BROKER_TRANSPORT is None:
        return 0.0
    return max(float(settings.DISPATCH_GATHER_WINDOW_MS), 0.0) / 1000


def _gather_redis() -> Any:
    return shared_redis(settings.CELERY_BROKER_URL, connect_timeout=1.0, timeout=2.0,
                        fail_fast=True)


def _scripts() -> tuple[Any, Any, Any]:
    return _scripts_for(settings.CELERY_BROKER_URL)


@functools.lru_cache(maxsize=4)
def _scripts_for(url: str) -> tuple[Any, Any, Any]:
    client = _gather_redis()
    return (client.register_script(_JOIN), client.register_script(_TAKE),
            client.register_script(_ABORT))


_ABORT = """
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1], KEYS[2])
return ids
"""


def gather_publication(*, priority: str, until: float, own: Sequence[str] = ()) -> Publication:
    """The task that takes what the window of `priority` gathered once `until` (epoch s) is
    past; `own`: the ids of the send that opened the window."""
    return Publication(
        DISPATCH_TASK, args=([],), kwargs={"gather": {"priority": priority, "until": until}},
        queue=Priority(priority).queue.value, what=f"a gathering task ({priority})",
        options={"declare": [], "argsrepr": "[]"},
        on_failed=functools.partial(_gather_abort, priority=priority, own=list(own)),
    )


def _gather_abort(*, priority: str, own: list[str]) -> None:
    """The window's task could not be published: empty the list and close the window in one
    step (the next send opens a new one), and end the lease of what the list held, as an
    unpublished task's deliveries have theirs ended: the relay sweeper's next run publishes
    them. If Redis is unreachable too, at least this send's own deliveries are handed over."""
    ids = set(own)
    try:
        ids.update(raw.decode() if isinstance(raw, bytes) else str(raw)
                   for raw in _scripts()[2](keys=[GATHER_LIST_KEY.format(priority=priority),
                                                  GATHER_WINDOW_KEY.format(priority=priority)]))
    except Exception:
        logger.warning("could not empty the %s gathering list; its deliveries wait for their "
                       "lease", priority, exc_info=True)
    deliveries_publish_failed(delivery_ids=sorted(ids))


def deliveries_gather(*, items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Appends these (delivery id, priority) pairs to their priority's gathering list and
    publishes a gathering task for each window this opened. Returns the pairs it could not
    gather (critical ones, or all of them when gathering is off or Redis refused): the caller
    publishes those as usual."""
    window = gather_window_seconds()
    if window <= 0:
        return items
    by_priority: dict[str, list[str]] = defaultdict(list)
    rest: list[tuple[str, str]] = []
    for delivery_id, priority in items:
        if priority == Priority.CRITICAL:
            rest.append((delivery_id, priority))
        else:
            by_priority[priority].append(str(delivery_id))
    join = _scripts()[0]
    publications: list[Publication] = []
    for priority, ids in by_priority.items():
        until = time.time() + window
        try:
            opened = join(keys=[GATHER_LIST_KEY.format(priority=priority),
                                GATHER_WINDOW_KEY.format(priority=priority)],
                          args=[repr(until), GATHER_WINDOW_TTL_MS, *ids])
        except Exception:
            logger.warning("could not gather %d deliveries; publishing them one task each",
                           len(ids), exc_info=True)
            rest.extend((i, priority) for i in ids)
            continue
        if opened:
            publications.append(gather_publication(priority=priority, until=until, own=ids))
    publications_publish(publications)
    return rest


def deliveries_gather_take(*, priority: str, until: float, limit: int) -> tuple[list[str], bool]:
    """For a gathering task: waits until its window closes (`until`, epoch s; never longer
    than one window, whatever the clocks say), then takes up to `limit` gathered ids. Returns
    them and whether ids are left (more than `limit` in the window)."""
    delay = min(until - time.time(), gather_window_seconds())
    if delay > 0:
        time.sleep(delay)
    take = _scripts()[1]
    reply = take(keys=[GATHER_LIST_KEY.format(priority=priority),
                       GATHER_WINDOW_KEY.format(priority=priority)], args=[max(limit, 1)])
    left = int(reply[0])
    ids = [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in reply[1:]]
    return ids, left > 0
