"""Reads for recurring sends."""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from apps.clients.models import Client
from apps.core.exceptions import NotFound

from .crontab import Cron, schedule_errors
from .models import RecurringSend


def recurring_send_list(*, client: Client) -> QuerySet[RecurringSend]:
    return RecurringSend.objects.filter(client=client).select_related("template", "segment")


def recurring_send_get(*, client: Client, recurring_send_id: str) -> RecurringSend:
    """A client's recurring send; 404 otherwise (also for another client's id)."""
    found = None
    with contextlib.suppress(ValueError):
        found = recurring_send_list(client=client).filter(id=uuid.UUID(str(recurring_send_id))).first()
    if found is None:
        raise NotFound(f"Recurring send '{recurring_send_id}' not found.")
    return found


def recurring_send_cron(recurring_send: RecurringSend) -> Cron | None:
    fields = {name: getattr(recurring_send, name) for name in
              ("minute", "hour", "day_of_week", "day_of_month", "month_of_year", "timezone")}
    if schedule_errors(**fields):
        return None
    return Cron.parse(**fields)


def recurring_send_next_run(recurring_send: RecurringSend, now: datetime | None = None) -> datetime | None:
    """When it fires next (UTC), from its crontab in its time zone; None when disabled."""
    if not recurring_send.enabled:
        return None
    cron = recurring_send_cron(recurring_send)
    return cron.next(now or timezone.now()) if cron else None
