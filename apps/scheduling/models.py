from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django_celery_beat.models import PeriodicTask

from apps.clients.models import Client
from apps.core.queues import Priority
from apps.segments.models import Segment
from apps.templates.models import Template


class RecurringSend(models.Model):
    """A template sent on a crontab (in a time zone) to a list of recipients or a segment.

    Kept in step with one django-celery-beat PeriodicTask (and its CrontabSchedule) by the
    services in services.py, so beat's DatabaseScheduler runs it; never save it directly."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="recurring_sends")
    name = models.CharField(max_length=200)
    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="+")
    variables = models.JSONField(default=dict, blank=True)
    channels = models.JSONField(default=list, blank=True,
                                help_text='e.g. ["email"]; empty: the template\'s channels.')
    priority = models.CharField(max_length=10, choices=Priority.choices(),
                                default=Priority.NORMAL.value)
    category = models.CharField(max_length=50, blank=True,
                                help_text="Empty: the template's category.")
    # The target: a list of the client's recipient ids, or a segment (exactly one of them).
    recipient_ids = models.JSONField(default=list, blank=True,
                                     help_text='External recipient ids, e.g. ["user_1"].')
    segment = models.ForeignKey(Segment, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="recurring_sends")
    # Crontab (celery syntax) evaluated in `timezone`.
    minute = models.CharField(max_length=240, default="0")
    hour = models.CharField(max_length=96, default="*")
    day_of_week = models.CharField(max_length=64, default="*",
                                   help_text="0-6 (Sunday is 0) or mon-sun.")
    day_of_month = models.CharField(max_length=124, default="*")
    month_of_year = models.CharField(max_length=64, default="*")
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA, e.g. Europe/Paris.")
    # Each run delivers at this time in each recipient's own time zone (its next occurrence
    # after the run); empty: at once.
    local_send_time = models.TimeField(
        null=True, blank=True,
        help_text="Deliver at this time in each recipient's time zone (the next occurrence "
                  "after each run); empty: at once.")
    enabled = models.BooleanField(default=True)
    periodic_task = models.OneToOneField(PeriodicTask, null=True, blank=True, editable=False,
                                         on_delete=models.SET_NULL, related_name="recurring_send")
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The crontab time the last scheduled run was for: a second beat tick for it sends nothing.
    last_scheduled_for = models.DateTimeField(null=True, blank=True, editable=False)
    last_notification_ids = models.JSONField(default=list, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    # Created with a test key: its runs are test notifications (sandbox only), and only test
    # keys see it.
    is_test = models.BooleanField("test", default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(segment__isnull=True) & ~Q(recipient_ids=[]))
                | (Q(segment__isnull=False) & Q(recipient_ids=[])),
                name="recurring_send_one_target",
            ),
        ]
        indexes = [
            models.Index(fields=["client", "-created_at"], name="recurring_send_client_created"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def crontab_expression(self) -> str:
        return " ".join((self.minute, self.hour, self.day_of_month, self.month_of_year,
                         self.day_of_week))
