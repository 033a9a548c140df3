"""Publishing webhook messages to the `webhooks` queue (the fast path; the relay sweeper is
the net): one task per chunk of an endpoint's messages. The outbox writers and the relay
sweeper return these publications; their caller publishes them after commit
(apps/core/tasks.py `publications_publish_on_commit`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.conf import settings

from apps.core.queues import Queue
from apps.core.tasks import Publication, publications_publish, publications_publish_on_commit

DELIVER_TASK = "webhooks.webhook_messages_deliver_task"


def webhook_messages_publications(*, items: Iterable[tuple[str, str]],
                                  countdown: float | None = None) -> list[Publication]:
    """The deliver tasks for (message id, endpoint id) pairs, one per chunk of an endpoint's
    messages. One that is lost costs nothing but time: the relay sweeper publishes a pending
    message when its lease ends."""
    by_endpoint: dict[str, list[str]] = defaultdict(list)
    for message_id, endpoint_id in items:
        by_endpoint[str(endpoint_id)].append(str(message_id))
    size = max(1, settings.WEBHOOKS_CHUNK_SIZE)
    return [
        Publication(DELIVER_TASK, args=(ids[start:start + size],), queue=Queue.WEBHOOKS.value,
                    countdown=countdown, what=f"{len(ids[start:start + size])} webhook messages")
        for ids in by_endpoint.values()
        for start in range(0, len(ids), size)
    ]


def webhook_messages_enqueue(*, items: Iterable[tuple[str, str]], countdown: float | None = None) -> int:
    """Publishes the messages now. Never raises for a broker problem. Returns how many
    messages were published."""
    published = 0
    for publication in webhook_messages_publications(items=items, countdown=countdown):
        published += len(publication.args[0]) * publications_publish([publication])
    return published


def webhook_messages_enqueue_on_commit(*, items: Iterable[tuple[str, str]],
                                       countdown: float | None = None) -> None:
    publications_publish_on_commit(webhook_messages_publications(items=items, countdown=countdown))


def webhook_endpoint_publication(task_name: str, endpoint_id: str,
                                 countdown: float | None = None) -> Publication:
    return Publication(f"webhooks.{task_name}", args=(str(endpoint_id),),
                       queue=Queue.WEBHOOKS.value, countdown=countdown,
                       what=f"{task_name} for endpoint {endpoint_id}")


def webhook_endpoint_probe_publication(*, endpoint_id: str,
                                       countdown: float | None = None) -> Publication:
    """The probe of a backed-off endpoint (when its step is short enough for a countdown; the
    relay sweeper publishes the others when they are due)."""
    return webhook_endpoint_publication("webhook_endpoint_probe_task", endpoint_id, countdown)


def webhook_endpoint_probe_enqueue(*, endpoint_id: str, countdown: float | None = None) -> bool:
    """Publishes the probe now."""
    return bool(publications_publish([webhook_endpoint_probe_publication(
        endpoint_id=endpoint_id, countdown=countdown)]))


def webhook_endpoint_drain_enqueue(*, endpoint_id: str) -> bool:
    """Publishes the next batch of an endpoint's queue (after a recovery)."""
    return bool(publications_publish([webhook_endpoint_publication(
        "webhook_endpoint_drain_task", endpoint_id)]))
