from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema_serializer
from rest_framework import serializers

from apps.core.fields import StrictTypesMixin

from ..models import WebhookAttempt, WebhookEndpoint
from ..outbound.events import EVENT_TYPES
from ..outbound.services import webhook_url_problem


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Failures and completions",
            value={"url": "https://example.com/hooks/notifyhub",
                   "events": ["delivery.failed", "delivery.bounced", "notification.completed"],
                   "description": "Order service"},
            request_only=True,
        )
    ]
)
class WebhookEndpointCreateSerializer(StrictTypesMixin, serializers.Serializer):
    url = serializers.URLField(max_length=2000)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES), required=False, default=list,
        max_length=len(EVENT_TYPES), help_text="Event types to receive; empty or omitted: all.")
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")

    def validate_url(self, value: str) -> str:
        problem = webhook_url_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


class WebhookEndpointSerializer(serializers.ModelSerializer):
    events = serializers.ListField(source="event_types", child=serializers.CharField(),
                                   help_text="Empty: all event types.")
    enabled = serializers.BooleanField(source="is_enabled")

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "events", "enabled", "disabled_at", "disabled_reason",
                  "failing_since", "next_probe_at", "created_at", "updated_at"]
        extra_kwargs = {
            "failing_since": {"help_text": "Since when every attempt has failed (null: healthy)."},
            "next_probe_at": {"help_text": "Backed off until then: queued messages wait and one "
                                           "probe is sent at this time (null: not backed off)."},
        }


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(help_text="Shown once: store it now.")
    previous_secret_expires_at = serializers.DateTimeField(
        allow_null=True, help_text="Until then the old secret signs too (a second signature).")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret", "previous_secret_expires_at"]


class WebhookAttemptSerializer(serializers.ModelSerializer):
    message_id = serializers.UUIDField()
    event_type = serializers.CharField()

    class Meta:
        model = WebhookAttempt
        fields = ["id", "message_id", "event_type", "attempt", "succeeded", "status_code",
                  "duration_ms", "error_code", "error", "created_at"]


class WebhookAttemptFilterSerializer(serializers.Serializer):
    message_id = serializers.UUIDField(required=False)
    succeeded = serializers.BooleanField(required=False, allow_null=True, default=None)


class WebhookReplaySerializer(StrictTypesMixin, serializers.Serializer):
    message_id = serializers.UUIDField(required=False)
    since = serializers.DateTimeField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("message_id" in attrs) == ("since" in attrs):
            raise serializers.ValidationError("Give exactly one of message_id and since.")
        return attrs


class WebhookReplayResultSerializer(serializers.Serializer):
    replayed = serializers.IntegerField()


class WebhookTestResultSerializer(serializers.Serializer):
    message_id = serializers.UUIDField()
