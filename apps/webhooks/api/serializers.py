from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema_serializer
from rest_framework import serializers

from apps.core.fields import StrictTypesMixin

from ..models import WebhookAttempt, WebhookEndpoint
from ..outbound.events import EVENT_TYPES
from ..outbound.services import webhook_url_problem

_IPV4 = r"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_H16 = r"[0-9A-Fa-f]{1,4}"
_IPV6 = (
    rf"(({_H16}:){{7}}{_H16}|({_H16}:){{1,7}}:|({_H16}:){{1,6}}:{_H16}|({_H16}:){{1,5}}(:{_H16}){{1,2}}"
    rf"|({_H16}:){{1,4}}(:{_H16}){{1,3}}|({_H16}:){{1,3}}(:{_H16}){{1,4}}|({_H16}:){{1,2}}(:{_H16}){{1,5}}"
    rf"|{_H16}:(:{_H16}){{1,6}}|:((:{_H16}){{1,7}}|:)|::([Ff]{{4}}(:0{{1,4}})?:)?{_IPV4}"
    rf"|({_H16}:){{1,4}}:{_IPV4})"
)
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
# What an endpoint URL may look like, in the schema and in the check alike: http(s), a host
# name or an IP literal (no credentials), an optional port, then anything without whitespace.
# Which hosts may be reached is the network guard's call (docs/webhooks.md), not the syntax's.
WEBHOOK_URL_PATTERN = (
    rf"^[Hh][Tt][Tt][Pp][Ss]?://(({_LABEL}\.)*{_LABEL}|\[{_IPV6}\])(:{_PORT})?([/?#][^\s]*)?$"
)


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
    url = serializers.RegexField(
        WEBHOOK_URL_PATTERN, max_length=2000, trim_whitespace=False,
        error_messages={"invalid": "Use an absolute http or https URL (no credentials)."})
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES), required=False, default=list,
        max_length=len(EVENT_TYPES), help_text="Event types to receive; empty or omitted: all.")
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")

    def validate_url(self, value: str) -> str:
        if value.endswith("\n"):  # Python's `$` lets one trailing newline through; JSON Schema's does not
            raise serializers.ValidationError("Use an absolute http or https URL (no credentials).")
        problem = webhook_url_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


class WebhookEndpointSerializer(serializers.ModelSerializer):
    url = serializers.RegexField(WEBHOOK_URL_PATTERN, help_text="As given at creation.")
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
