from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from ..models import ActorType, AuditLog


class DateOrDateTimeField(serializers.DateTimeField):
    """ISO 8601 date-time (naive means UTC) or a bare date (its midnight UTC; with
    `end_of_day`, the next midnight, so `end=2025-01-31` includes that whole day)."""

    def __init__(self, *, end_of_day: bool = False, **kwargs: Any) -> None:
        self.end_of_day = end_of_day
        super().__init__(**kwargs)

    def to_internal_value(self, value: Any) -> dt.datetime:
        text = str(value).strip()
        if len(text) == 10:
            try:
                day = dt.date.fromisoformat(text)
            except ValueError:
                self.fail("invalid", format="YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss][+HH:MM]")
            start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
            return start + dt.timedelta(days=1) if self.end_of_day else start
        parsed = super().to_internal_value(text)
        return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=dt.UTC)


class AuditLogFilterSerializer(serializers.Serializer):
    start = DateOrDateTimeField(required=False, help_text="From this time (inclusive).")
    end = DateOrDateTimeField(required=False, end_of_day=True,
                              help_text="Until this time (exclusive); a date includes that day.")
    action = serializers.CharField(required=False, max_length=64)
    recipient = serializers.CharField(required=False, max_length=200,
                                      help_text="Your recipient's external id.")
    notification_id = serializers.UUIDField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("start"), attrs.get("end")
        # start = end is an empty range (start inclusive, end exclusive), not an error.
        if start is not None and end is not None and end < start:
            raise serializers.ValidationError({"end": ["Must not be before start."]})
        return attrs


class AuditActorSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=ActorType.choices)
    display = serializers.CharField(help_text="API key prefix, task name or 'NotifyHub staff'.")


STAFF = "NotifyHub staff"


class AuditLogSerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()
    recipient = serializers.CharField(source="recipient_external_id")
    ip = serializers.SerializerMethodField()
    user_agent = serializers.SerializerMethodField()

    class Meta:
        model = AuditLog
        fields = ["id", "created_at", "action", "actor", "object_type", "object_id", "recipient",
                  "notification_id", "changes", "ip", "user_agent", "request_id"]

    # Staff rows say "NotifyHub staff", without a username or their IP.
    def get_actor(self, obj: AuditLog) -> dict[str, str]:
        display = STAFF if obj.actor_type == ActorType.USER else obj.actor_display
        return {"type": obj.actor_type, "display": display}

    def get_ip(self, obj: AuditLog) -> str | None:
        return None if obj.actor_type == ActorType.USER else obj.ip

    def get_user_agent(self, obj: AuditLog) -> str:
        return "" if obj.actor_type == ActorType.USER else obj.user_agent
