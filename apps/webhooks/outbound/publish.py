"""Publishing webhook messages to the `webhooks` queue (the fast path; the relay sweeper is
the net): after commit, in chunks of one endpoint's messages."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction

from apps.core.queues import Queue
from apps.core.tasks import task_publish

logger = logging.getLogger(__name__)

DELIVER_TASK = "webhooks.webhook_messages_deliver_task"
_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def webhook_messages_enqueue(*, items: Iterable[tuple[str, str]], countdown: float | None = None) -> int:
    """Publishes (message id, endpoint id) pairs, one task per chunk of an endpoint's messages.

    Never raises for a broker problem: the relay sweeper publishes what is left when its lease
    ends. Returns how many messages were published."""
    by_endpoint: dict[str, list[str]] = defaultdict(list)
    for message_id, endpoint_id in items:
        by_endpoint[str(endpoint_id)].append(str(message_id))
    size = max(1, settings.WEBHOOKS_CHUNK_SIZE)
    published = 0
    for ids in by_endpoint.values():
        for start in range(0, len(ids), size):
            chunk = ids[start:start + size]
            try:
                task_publish(
                    DELIVER_TASK, args=[chunk], queue=Queue.WEBHOOKS.value, countdown=countdown,
                    retry=True, retry_policy=_PUBLISH_RETRY,
                )
            except Exception:
                logger.exception("could not publish %d webhook messages; the relay sweeper will",
                                 len(chunk))
                continue
            published += len(chunk)
    return published


def webhook_messages_enqueue_on_commit(*, items: Iterable[tuple[str, str]],
                                       countdown: float | None = None) -> None:
    items = list(items)
    if items:
        transaction.on_commit(lambda: webhook_messages_enqueue(items=items, countdown=countdown))


def _publish_endpoint_task(task_name: str, endpoint_id: str, countdown: float | None) -> bool:
    try:
        task_publish(f"webhooks.{task_name}", args=[str(endpoint_id)], queue=Queue.WEBHOOKS.value,
                     countdown=countdown, retry=True, retry_policy=_PUBLISH_RETRY)
    except Exception:
        logger.exception("could not publish %s for endpoint %s; the relay sweeper will",
                         task_name, endpoint_id)
        return False
    return True


def webhook_endpoint_probe_enqueue(*, endpoint_id: str, countdown: float | None = None) -> bool:
    """Publishes the probe of a backed-off endpoint (when its step is short enough for a
    countdown; the relay sweeper publishes the others when they are due)."""
    return _publish_endpoint_task("webhook_endpoint_probe_task", endpoint_id, countdown)


def webhook_endpoint_drain_enqueue(*, endpoint_id: str) -> bool:
    """Publishes the next batch of an endpoint's queue (after a recovery)."""
    return _publish_endpoint_task("webhook_endpoint_drain_task", endpoint_id, None)
