from __future__ import annotations

import re
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from apps.core.fields import BoundedJSONObjectField, StrictTypesMixin
from apps.core.queues import Priority
from apps.notifications.models import Channel

from ..crontab import MAX_LENGTHS, field_error, timezone_error
from ..models import RecurringSend
from ..selectors import recurring_send_next_run
from ..services import MAX_RECIPIENT_IDS

_STEP = r"/[1-9][0-9]{0,2}"
_NUMBERS = {
    "minute": r"[0-5]?[0-9]",
    "hour": r"([01]?[0-9]|2[0-3])",
    "day_of_week": r"([0-6]|sun|mon|tue|wed|thu|fri|sat)",
    "day_of_month": r"(0?[1-9]|[12][0-9]|3[01])",
    "month_of_year": r"(0?[1-9]|1[0-2])",
}


def crontab_pattern(name: str) -> str:
    """The syntax of one crontab field, as celery reads it: comma-separated `*`, `*/step`, a
    value, a range `a-b` (wrapping when b < a) or `a-b/step`."""
    number = _NUMBERS[name]
    item = rf"(\*({_STEP})?|{number}(-{number}({_STEP})?)?)"
    return rf"{item}(,{item})*"


class CrontabField(serializers.CharField):
    """One crontab field: its syntax is the documented pattern (no surrounding spaces), then
    celery's own parser decides."""

    def __init__(self, crontab_field: str, **kwargs: Any) -> None:
        self.crontab_field = crontab_field
        self.syntax = re.compile(crontab_pattern(crontab_field))
        super().__init__(max_length=MAX_LENGTHS[crontab_field], trim_whitespace=False,
                         validators=[RegexValidator(f"^{crontab_pattern(crontab_field)}$")],
                         **kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not self.syntax.fullmatch(value):
            raise serializers.ValidationError(
                f"Not a crontab {self.crontab_field.replace('_', ' ')}: '*', '0', '*/15', "
                f"'1-5', '1,15'{', mon-fri' if self.crontab_field == 'day_of_week' else ''}.")
        message = field_error(self.crontab_field, value)
        if message:
            raise serializers.ValidationError(message)
        return value


class TimeZoneNameField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        message = timezone_error(value)
        if message:
            raise serializers.ValidationError(message)
        return value


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Weekday digest at 09:00 Paris time to a segment",
            value={"name": "Weekday digest", "template_id": "daily_digest",
                   "variables": {"edition": "morning"}, "channels": ["email"],
                   "priority": "low", "segment": "pro_users", "minute": "0", "hour": "9",
                   "day_of_week": "mon-fri", "timezone": "Europe/Paris"},
            request_only=True,
        )
    ]
)
class RecurringSendInputSerializer(StrictTypesMixin, serializers.Serializer):
    """POST: name, template_id, a target (recipient_ids or segment), minute and hour are
    required. PUT: any subset; the others keep their value."""

    name = serializers.CharField(max_length=200)
    template_id = serializers.CharField(max_length=100, help_text="The template's id or key.")
    variables = BoundedJSONObjectField(required=False, default=dict)
    channels = serializers.ListField(child=serializers.ChoiceField(choices=Channel.choices),
                                     required=False, default=list,
                                     help_text="Empty: the template's channels.")
    priority = serializers.ChoiceField(choices=Priority.choices(), default="normal")
    category = serializers.RegexField(r"^[a-z0-9_.-]{0,50}$", required=False, allow_blank=True,
                                      default="")
    recipient_ids = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=MAX_RECIPIENT_IDS,
        help_text="Your recipient ids; or give `segment`.",
    )
    segment = serializers.CharField(max_length=100, required=False, allow_null=True,
                                    help_text="A segment's id or key; or give `recipient_ids`.")
    minute = CrontabField("minute", help_text="Crontab minute, e.g. '0', '*/15'.")
    hour = CrontabField("hour", help_text="Crontab hour, e.g. '9', '8-18', '*'.")
    day_of_week = CrontabField("day_of_week", required=False, default="*",
                               help_text="'*', 'mon-fri', '0,6' (Sunday is 0).")
    day_of_month = CrontabField("day_of_month", required=False, default="*")
    month_of_year = CrontabField("month_of_year", required=False, default="*")
    timezone = TimeZoneNameField(max_length=64, required=False, default="UTC")
    local_send_time = serializers.TimeField(
        required=False, allow_null=True, default=None,
        help_text="Deliver each run at this time in each recipient's own time zone (its next "
                  "occurrence after the run); null: at once.")
    enabled = serializers.BooleanField(required=False, default=True)


class ScheduleTemplateRefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    key = serializers.CharField()


class ScheduleSegmentRefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    key = serializers.CharField()


class RecurringSendOutputSerializer(serializers.ModelSerializer):
    template = ScheduleTemplateRefSerializer()
    segment = ScheduleSegmentRefSerializer(allow_null=True)
    next_run_at = serializers.SerializerMethodField()
    test = serializers.BooleanField(
        source="is_test", read_only=True,
        help_text="Created with a test key: its runs are test notifications (sandbox only).")

    class Meta:
        model = RecurringSend
        fields = ["id", "name", "test", "template", "variables", "channels", "priority", "category",
                  "recipient_ids", "segment", "minute", "hour", "day_of_week", "day_of_month",
                  "month_of_year", "timezone", "local_send_time", "enabled", "next_run_at", "last_run_at",
                  "last_notification_ids", "last_error", "created_at", "updated_at"]

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_next_run_at(self, obj: RecurringSend) -> str | None:
        when = recurring_send_next_run(obj)
        return when.isoformat() if when else None


class RunResultSerializer(serializers.Serializer):
    status = serializers.CharField()
    notifications = serializers.ListField(child=serializers.UUIDField())
    recipients = serializers.IntegerField()
