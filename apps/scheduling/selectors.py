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


def recurring_send_list(*, client: Client, is_test: bool | None = None) -> QuerySet[RecurringSend]:
    """The client's recurring sends; `is_test` keeps one mode's (an API key sees its own)."""
    qs = RecurringSend.objects.filter(client=client).select_related("template", "segment")
    return qs if is_test is None else qs.filter(is_test=is_test)


def recurring_send_get(*, client: Client, recurring_send_id: str, is_test: bool) -> RecurringSend:
    """A client's recurring send of this mode; 404 otherwise (also for another client's id, or
    a live schedule asked for with a test key and the reverse)."""
    found = None
    with contextlib.suppress(ValueError):
        found = recurring_send_list(client=client, is_test=is_test).filter(
            id=uuid.UUID(str(recurring_send_id))).first()
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
