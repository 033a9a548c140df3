"""Celery tasks: thin wrappers that take ids and call a service. Entry points: nobody imports
them; services publish them by name (apps/core/tasks.py). The dispatch and expand tasks run on
the queue of their notification's priority, which the publisher names; the sweeper on
`maintenance`."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from apps.core.queues import Queue
from apps.core.tasks import publications_publish_on_commit

from .dispatch import deliveries_dispatch
from .fanout import accept_job_expand
from .relay import relay_sweep


# A database error (PostgreSQL restarting, a lost connection) publishes the task again with a
# backoff instead of dropping it: what it had claimed stays leased and the claim of the retry
# skips it (the sweeper hands it out when the lease ends), the rest is claimed then.
@shared_task(name="notifications.deliveries_dispatch_task", acks_late=True,
             reject_on_worker_lost=True, ignore_result=True,
             autoretry_for=(OperationalError, InterfaceError), retry_backoff=1,
             retry_backoff_max=30, max_retries=8)
def deliveries_dispatch_task(delivery_ids: list[str], prepaid: dict[str, int] | None = None,
                             gather: dict[str, Any] | None = None) -> dict[str, Any]:
    report = deliveries_dispatch(delivery_ids=delivery_ids, prepaid=prepaid, gather=gather)
    publications_publish_on_commit(report.publications)
    return {"claimed": report.claimed, "sent": report.sent, "retrying": report.retrying,
            "failed": report.failed}


@shared_task(name="notifications.relay_sweep_task", queue=Queue.MAINTENANCE.value, ignore_result=True)
def relay_sweep_task() -> dict[str, int]:
    report = relay_sweep()
    publications_publish_on_commit(report.publications)
    return {"requeued": report.requeued, "recovered": report.recovered_from_sending,
            "released": report.released_scheduled}


@shared_task(name="notifications.accept_job_expand_task", acks_late=True,
             reject_on_worker_lost=True, ignore_result=True,
             autoretry_for=(OperationalError, InterfaceError), retry_backoff=1,
             retry_backoff_max=30, max_retries=8)
def accept_job_expand_task(job_id: str, cursor: int | None = None) -> dict[str, Any]:
    report = accept_job_expand(job_id=job_id, cursor=cursor)
    return {"expanded": report.expanded, "created": report.created, "skipped": report.skipped,
            "done": report.done}
