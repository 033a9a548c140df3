"""Inbox messages expire after INBOX_RETENTION_DAYS; the beat task deletes them in batches."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.inbox.models import InboxMessage
from apps.inbox.services import inbox_messages_expire
from apps.notifications.models import Delivery
from celery_app import app

from .conftest import SendInApp

pytestmark = pytest.mark.django_db


def test_expired_messages_are_deleted_in_batches_and_the_rest_kept(
        ada: Any, send_in_app: SendInApp, settings: Any) -> None:
    for _ in range(5):
        send_in_app("ada")
    settings.INBOX_RETENTION_DAYS = 30
    send_in_app("ada")
    newest = InboxMessage.objects.order_by("-seq").first()
    assert newest is not None
    assert (newest.expires_at - newest.created_at) == timedelta(days=30)

    deleted = inbox_messages_expire(now=timezone.now() + timedelta(days=31), batch_size=2)

    assert deleted == 1  # the one stored with 30 days; the others live 90
    deleted = inbox_messages_expire(now=timezone.now() + timedelta(days=91), batch_size=2)
    assert deleted == 5
    assert InboxMessage.objects.count() == 0
    # The deliveries stay: they go with their notification (NOTIFICATION_RETENTION_DAYS).
    assert Delivery.objects.filter(channel="in_app").count() == 6


def test_nothing_expires_early(ada: Any, send_in_app: SendInApp) -> None:
    send_in_app("ada")
    assert inbox_messages_expire(now=timezone.now() + timedelta(days=89)) == 0
    assert InboxMessage.objects.count() == 1


def test_the_retention_task_is_scheduled_on_the_maintenance_queue() -> None:
    entry = app.conf.beat_schedule["inbox-retention"]
    assert entry["task"] == "inbox.inbox_messages_expire_task"
    assert entry["options"]["queue"] == "maintenance"
    assert "inbox.inbox_messages_expire_task" in app.tasks
