"""Inbox tasks (entry points: published by beat by name, imported only by the AppConfig)."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from apps.core.queues import Queue

from .services import inbox_messages_expire


@shared_task(name="inbox.inbox_messages_expire_task", queue=Queue.MAINTENANCE.value,
             acks_late=True, reject_on_worker_lost=True, ignore_result=True,
             autoretry_for=(OperationalError, InterfaceError), retry_backoff=5,
             retry_backoff_max=300, max_retries=3)
def inbox_messages_expire_task() -> int:
    """Deletes expired inbox messages (INBOX_RETENTION_DAYS), in batches within a budget."""
    return inbox_messages_expire()
