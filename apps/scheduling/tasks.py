"""Celery tasks: thin wrappers that take ids and call a service."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from apps.core.queues import Queue

from .models import RecurringSend
from .services import recurring_send_run


@shared_task(name="scheduling.recurring_send_task", queue=Queue.MAINTENANCE.value,
             acks_late=True, reject_on_worker_lost=True, ignore_result=True,
             autoretry_for=(OperationalError, InterfaceError), retry_backoff=2,
             retry_backoff_max=60, max_retries=5)
def recurring_send_task(recurring_send_id: str) -> dict[str, Any]:
    """Fired by beat (DatabaseScheduler) on the schedule's crontab. Safe to run twice: a
    crontab time already run sends nothing."""
    recurring_send = RecurringSend.objects.filter(id=recurring_send_id).first()
    if recurring_send is None:  # deleted after beat published the tick
        return {"status": "missing"}
    result = recurring_send_run(recurring_send=recurring_send)
    return {"status": result.status, "notifications": [str(n.id) for n in result.notifications],
            "scheduled_for": result.scheduled_for.isoformat() if result.scheduled_for else None,
            "error": result.error}
