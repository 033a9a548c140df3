"""Writes for recurring sends. Each one owns a django-celery-beat PeriodicTask and its
CrontabSchedule, created, changed and deleted here in the same transaction, so beat's
DatabaseScheduler fires `scheduling.recurring_send_task` on the crontab in the schedule's
time zone. A run sends once per crontab time, however many times it is triggered."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from django.db import transaction
from django.utils import timezone as django_timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from apps.audit.services import audit_record, audit_snapshot, audit_update
from apps.clients.models import Client
from apps.clients.quotas import delivery_quota
from apps.core.exceptions import ApplicationError
from apps.core.queues import Priority, Queue
from apps.notifications.models import Channel, Notification
from apps.recipients.models import Recipient
from apps.segments.models import Segment
from apps.segments.services import Charge, recipients_send_in_chunks, segment_send
from apps.templates.models import Template

from .crontab import FIELDS, Cron, schedule_errors
from .models import RecurringSend

logger = logging.getLogger(__name__)

TASK_NAME = "scheduling.recurring_send_task"
MAX_RECIPIENT_IDS = 10_000
EDITABLE = ("name", "template", "variables", "channels", "priority", "category", "recipient_ids",
            "segment", *FIELDS, "timezone", "local_send_time", "enabled")


def recurring_send_check(values: dict[str, Any], *, client: Client) -> None:
    """Raises ApplicationError for what a recurring send may not be: 400 with every bad field
    (crontab, time zone, target, channels), then 422 for the template (not published, a
    required variable missing), as a send would answer."""
    errors = schedule_errors(timezone=values.get("timezone"),
                             **{name: values.get(name) for name in FIELDS})
    recipient_ids, segment = values.get("recipient_ids") or [], values.get("segment")
    if segment is not None and recipient_ids:
        errors["segment"] = ["Give either a segment or recipient_ids, not both."]
    elif segment is None and not recipient_ids:
        errors["recipient_ids"] = ["Give recipient_ids or a segment."]
    elif segment is not None and segment.client_id != client.id:
        errors["segment"] = ["Unknown segment."]
    if not isinstance(recipient_ids, list) or len(recipient_ids) > MAX_RECIPIENT_IDS or not all(
        isinstance(r, str) and 0 < len(r) <= 200 for r in recipient_ids
    ):
        errors["recipient_ids"] = [f"A list of at most {MAX_RECIPIENT_IDS} recipient ids."]
    channels = values.get("channels") or []
    if not isinstance(channels, list) or any(c not in Channel.values for c in channels):
        errors["channels"] = [f"A list of: {', '.join(Channel.values)}."]
    priorities = [p.value for p in Priority]
    if values.get("priority") not in priorities:
        errors["priority"] = [f"One of: {', '.join(priorities)}."]
    name = values.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors["name"] = ["Required, at most 200 characters."]
    if not isinstance(values.get("variables"), dict):
        errors["variables"] = ["A JSON object."]
    template: Template | None = values.get("template")
    if template is None or template.client_id != client.id:
        errors["template_id"] = ["Unknown template."]
    if errors:
        raise ApplicationError("The recurring send has invalid fields.", code="invalid",
                               fields=errors, status_code=400)
    assert template is not None
    version = template.active_version
    if version is None:
        raise ApplicationError(f"Template '{template.key}' has no published version.",
                               code="template_not_published",
                               fields={"template_id": ["Publish a version first."]})
    missing = [name for name in version.required_variables if name not in values["variables"]]
    if missing:
        raise ApplicationError(
            f"Missing template variables: {', '.join(missing)}.", code="missing_variables",
            fields={f"variables.{name}": ["Required by the template."] for name in missing},
        )


def _sync_periodic_task(recurring_send: RecurringSend) -> None:
    """Creates or updates the schedule's CrontabSchedule (with its time zone) and
    PeriodicTask; saving the PeriodicTask tells beat's DatabaseScheduler to reload."""
    crontab_fields = {name: getattr(recurring_send, name) for name in FIELDS}
    task = recurring_send.periodic_task
    if task is None:
        task = PeriodicTask(name=f"recurring-send:{recurring_send.id}")
    crontab = task.crontab
    if crontab is None:
        crontab = CrontabSchedule(**crontab_fields, timezone=recurring_send.timezone)
    else:
        for name, value in crontab_fields.items():
            setattr(crontab, name, value)
        crontab.timezone = recurring_send.timezone
    crontab.save()
    task.crontab = crontab
    task.interval = task.solar = task.clocked = None
    task.task = TASK_NAME
    task.args = "[]"
    task.kwargs = json.dumps({"recurring_send_id": str(recurring_send.id)})
    task.queue = Queue.MAINTENANCE.value
    task.enabled = recurring_send.enabled
    task.one_off = False
    task.description = f"{recurring_send.client_id}: {recurring_send.name}"[:1000]
    task.save()
    if recurring_send.periodic_task_id != task.id:
        recurring_send.periodic_task = task
        recurring_send.save(update_fields=["periodic_task", "updated_at"])


@transaction.atomic
def recurring_send_create(
    *,
    client: Client,
    name: str,
    template: Template,
    variables: dict[str, Any] | None = None,
    channels: list[str] | None = None,
    priority: str = "normal",
    category: str = "",
    recipient_ids: list[str] | None = None,
    segment: Segment | None = None,
    minute: str = "0",
    hour: str = "*",
    day_of_week: str = "*",
    day_of_month: str = "*",
    month_of_year: str = "*",
    timezone: str = "UTC",
    local_send_time: time | None = None,
    enabled: bool = True,
    is_test: bool = False,
) -> RecurringSend:
    """A new recurring send and its PeriodicTask + CrontabSchedule. `is_test` (created with a
    test key) makes every run a test send: sandbox only."""
    values: dict[str, Any] = {
        "name": name, "template": template, "variables": variables or {},
        "channels": channels or [], "priority": priority, "category": category or "",
        "recipient_ids": recipient_ids or [], "segment": segment, "minute": minute,
        "hour": hour, "day_of_week": day_of_week, "day_of_month": day_of_month,
        "month_of_year": month_of_year, "timezone": timezone,
        "local_send_time": local_send_time, "enabled": enabled,
    }
    recurring_send_check(values, client=client)
    recurring_send = RecurringSend.objects.create(client=client, is_test=is_test, **values)
    _sync_periodic_task(recurring_send)
    audit_record(action="schedule.create", client=client, object_type="schedule",
                 object_id=recurring_send.pk, changes={**values, "is_test": is_test,
                                                       "template": template.key,
                                                       "segment": segment.key if segment else None})
    return recurring_send


@transaction.atomic
def recurring_send_update(*, recurring_send: RecurringSend, **changes: Any) -> RecurringSend:
    """Changes the given fields (EDITABLE) and the PeriodicTask with them. Giving a segment
    drops the recipient ids and giving recipient ids drops the segment."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise TypeError(f"Not editable: {', '.join(sorted(unknown))}")
    before = audit_snapshot(recurring_send, EDITABLE)
    values = {name: getattr(recurring_send, name) for name in EDITABLE}
    values.update(changes)
    if changes.get("segment") is not None and "recipient_ids" not in changes:
        values["recipient_ids"] = []
    if changes.get("recipient_ids") and "segment" not in changes:
        values["segment"] = None
    values["channels"] = values["channels"] or []
    values["category"] = values["category"] or ""
    recurring_send_check(values, client=recurring_send.client)
    for name, value in values.items():
        setattr(recurring_send, name, value)
    recurring_send.save()
    _sync_periodic_task(recurring_send)
    audit_update(action="schedule.update", before=before, after=recurring_send,
                 client=recurring_send.client_id, object_type="schedule",
                 extra={"name": recurring_send.name})
    return recurring_send


@transaction.atomic
def recurring_send_delete(*, recurring_send: RecurringSend) -> None:
    """Deletes the recurring send, its PeriodicTask and its CrontabSchedule (when no other
    task uses it)."""
    task = recurring_send.periodic_task
    audit_record(action="schedule.delete", client=recurring_send.client_id, object_type="schedule",
                 object_id=recurring_send.pk, changes={"name": recurring_send.name})
    recurring_send.delete()
    if task is not None:
        crontab = task.crontab
        task.delete()
        if crontab is not None and not PeriodicTask.objects.filter(crontab=crontab).exists():
            crontab.delete()


@dataclass(frozen=True)
class RunResult:
    status: str  # "sent" | "failed" | "disabled" | "already_ran" | "never_due"
    notifications: list[Notification] = field(default_factory=list)
    scheduled_for: datetime | None = None
    error_code: str = ""
    error: str = ""

    @property
    def recipients(self) -> int:
        return sum(n.recipient_count for n in self.notifications)


def _send(recurring_send: RecurringSend, *, key: str, scheduled_for: datetime | None,
          charge: Charge) -> list[Notification]:
    metadata: dict[str, Any] = {"recurring_send": str(recurring_send.id)}
    if scheduled_for is not None:
        metadata["scheduled_for"] = scheduled_for.isoformat()
    common: dict[str, Any] = {
        "client": recurring_send.client,
        "template_id": str(recurring_send.template_id),
        "variables": recurring_send.variables,
        "channels": recurring_send.channels or None,
        "priority": recurring_send.priority,
        "category": recurring_send.category or None,
        "metadata": metadata,
        "local_send_time": recurring_send.local_send_time,
        "idempotency_key": key,
        "charge": charge,
        "is_test": recurring_send.is_test,
    }
    if recurring_send.segment is not None:
        return segment_send(segment=recurring_send.segment,
                            actor=f"recurring_send:{recurring_send.id}", **common)
    # Ids no longer known, and recipients without an address, are skipped like a segment's.
    audience = Recipient.objects.filter(client=recurring_send.client,
                                        external_id__in=recurring_send.recipient_ids)
    return recipients_send_in_chunks(audience=audience, **common)


def recurring_send_run(
    *, recurring_send: RecurringSend, now: datetime | None = None, manual_key: str | None = None
) -> RunResult:
    """Runs a recurring send for the crontab time at or before `now`, once.

    Scheduled runs (beat) are idempotent per crontab time: the row is locked, a time already
    run is skipped, and the notifications carry the idempotency key
    `recurring:<id>:<time>#<chunk>`. A disabled schedule does nothing. A run the domain
    refuses (template changed, variables missing, the client's daily delivery quota reached)
    is recorded in `last_error` and the audit log (`schedule.run`, status failed), not retried.
    Its deliveries count against the daily quota like an API send's.

    `manual_key` makes a manual run ("run now"): it sends even when disabled, once per key.
    """
    # Entered outside the run's transaction: if it rolls back, what was charged is refunded.
    with delivery_quota(client=recurring_send.client,
                        is_test=recurring_send.is_test) as charge:
        return _run(recurring_send=recurring_send, now=now, manual_key=manual_key, charge=charge)


@transaction.atomic
def _run(*, recurring_send: RecurringSend, now: datetime | None, manual_key: str | None,
         charge: Charge) -> RunResult:
    now = now or django_timezone.now()
    locked = (RecurringSend.objects.select_for_update(of=("self",))
              .select_related("client", "segment", "template").get(pk=recurring_send.pk))
    scheduled_for: datetime | None = None
    if manual_key is None:
        if not locked.enabled:
            return RunResult(status="disabled")
        cron = Cron.parse(timezone=locked.timezone, **{n: getattr(locked, n) for n in FIELDS})
        scheduled_for = cron.previous(now)
        if scheduled_for is None:
            return RunResult(status="never_due")
        if locked.last_scheduled_for is not None and scheduled_for <= locked.last_scheduled_for:
            return RunResult(status="already_ran", scheduled_for=scheduled_for)
        key = f"recurring:{locked.id}:{scheduled_for:%Y%m%dT%H%MZ}"
    else:
        key = f"recurring:{locked.id}:manual:{manual_key}"

    result: RunResult
    try:
        with transaction.atomic():
            notifications = _send(locked, key=key, scheduled_for=scheduled_for, charge=charge)
        result = RunResult(status="sent", notifications=notifications, scheduled_for=scheduled_for)
    except ApplicationError as exc:
        logger.warning("recurring send %s failed: %s %s", locked.id, exc.code, exc.message)
        result = RunResult(status="failed", scheduled_for=scheduled_for, error_code=exc.code,
                           error=f"{exc.code}: {exc.message}")

    locked.last_run_at = now
    if scheduled_for is not None:
        locked.last_scheduled_for = scheduled_for
    locked.last_notification_ids = [str(n.id) for n in result.notifications]
    locked.last_error = result.error
    locked.save(update_fields=["last_run_at", "last_scheduled_for", "last_notification_ids",
                               "last_error", "updated_at"])
    audit_record(action="schedule.run", client=locked.client_id, object_type="schedule", object_id=locked.pk,
                 changes={"status": result.status, "manual": manual_key is not None,
                          "scheduled_for": scheduled_for, "error": result.error,
                          "notification_ids": locked.last_notification_ids})
    recurring_send.last_run_at, recurring_send.last_scheduled_for = now, locked.last_scheduled_for
    recurring_send.last_notification_ids = locked.last_notification_ids
    recurring_send.last_error = locked.last_error
    return result
