"""Celery tasks: retention, fired by beat on the maintenance queue (celery_app.py)."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from apps.core.queues import Queue

from .retention import audit_logs_purge, notifications_purge

_OPTIONS: dict[str, Any] = {
    "queue": Queue.MAINTENANCE.value, "acks_late": True, "reject_on_worker_lost": True,
    "ignore_result": True, "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 5, "retry_backoff_max": 300, "max_retries": 3,
}


@shared_task(name="audit.notifications_retention_task", **_OPTIONS)
def notifications_retention_task() -> dict[str, Any]:
    """Deletes notifications past NOTIFICATION_RETENTION_DAYS for at most
    RETENTION_TIME_BUDGET_SECONDS; safe to run twice (a deleted batch is gone)."""
    result = notifications_purge(time_budget=settings.RETENTION_TIME_BUDGET_SECONDS)
    return {"notifications": result.deleted, "deliveries": result.deliveries,
            "complete": result.complete}


@shared_task(name="audit.audit_logs_retention_task", **_OPTIONS)
def audit_logs_retention_task() -> dict[str, Any]:
    """Deletes audit rows past AUDIT_RETENTION_DAYS for at most RETENTION_TIME_BUDGET_SECONDS."""
    result = audit_logs_purge(time_budget=settings.RETENTION_TIME_BUDGET_SECONDS)
    return {"audit_rows": result.deleted, "complete": result.complete}
