from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from apps.core.fields import BoundedJSONObjectField
from apps.core.queues import Priority
from apps.recipients.api.serializers import InlineRecipientSerializer

from ..models import Channel, Delivery, DeliveryEvent, Notification, NotificationStatus


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "description": "The id of a recipient you created"},
            {
                "type": "object",
                "description": "A recipient upserted on the fly",
                "required": ["id"],
                "properties": {
                    "id": {"type": "string"},
                    "email": {"type": "string", "format": "email"},
                    "phone": {"type": "string", "example": "+14155550100"},
                    "whatsapp": {"type": "string"},
                    "locale": {"type": "string"},
                    "timezone": {"type": "string"},
                    "attributes": {"type": "object"},
                },
            },
        ]
    }
)
class RecipientRefField(serializers.Field):
    """A recipient: your id for one already known, or an object upserted on the fly."""

    default_error_messages = {"invalid": "A recipient id string or an object with an 'id'."}

    def to_internal_value(self, data: Any) -> str | dict[str, Any]:
        if isinstance(data, str):
            if not data.strip() or len(data) > 200:
                self.fail("invalid")
            return data
        if isinstance(data, dict):
            inline = InlineRecipientSerializer(data=data)
            inline.is_valid(raise_exception=True)
            return dict(inline.validated_data)
        self.fail("invalid")
        raise AssertionError  # unreachable

    def to_representation(self, value: Any) -> Any:
        return value


class SendContentSerializer(serializers.Serializer):
    """What to send, without to whom: shared by notification, segment and schedule sends."""

    template_id = serializers.CharField(max_length=100)
    variables = BoundedJSONObjectField(required=False, default=dict)
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=Channel.choices), required=False, min_length=1
    )
    priority = serializers.ChoiceField(choices=Priority.choices(), default="normal")
    category = serializers.RegexField(r"^[a-z0-9_.-]{1,50}$", required=False)
    metadata = BoundedJSONObjectField(required=False, default=dict, max_bytes=8192)
    scheduled_at = serializers.DateTimeField(required=False, allow_null=True)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Order confirmation by email",
            value={
                "recipients": ["user_456", {"id": "user_789", "email": "a@example.com"}],
                "template_id": "order_confirmation",
                "variables": {"name": "John", "orderId": "ORD-789"},
                "channels": ["email"],
                "priority": "high",
                "category": "transactional",
                "metadata": {"campaign_id": "123"},
            },
            request_only=True,
        )
    ]
)
class NotificationSendSerializer(SendContentSerializer):
    recipients = serializers.ListField(child=RecipientRefField(), min_length=1)
    local_send_time = serializers.TimeField(
        required=False, help_text="Deliver at this time in each recipient's own time zone "
        "(next occurrence, or on local_send_date).")
    local_send_date = serializers.DateField(required=False)

    def validate_recipients(self, value: list[Any]) -> list[Any]:
        # Read at request time (not import time) so the setting can change per deployment.
        limit = settings.MAX_RECIPIENTS_PER_REQUEST
        if len(value) > limit:
            raise serializers.ValidationError(f"At most {limit} recipients per request.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "local_send_date" in attrs and "local_send_time" not in attrs:
            raise serializers.ValidationError({"local_send_time": ["Required with local_send_date."]})
        return attrs


class DeliveryEventSerializer(serializers.ModelSerializer):
    at = serializers.DateTimeField(source="occurred_at")

    class Meta:
        model = DeliveryEvent
        fields = ["at", "event", "status", "provider", "provider_message_id", "error_code",
                  "error_message", "detail"]


class DeliverySerializer(serializers.ModelSerializer):
    recipient = serializers.CharField(source="recipient.external_id")
    next_attempt_at = serializers.SerializerMethodField()

    class Meta:
        model = Delivery
        fields = ["id", "recipient", "channel", "status", "attempts", "next_attempt_at",
                  "provider", "provider_message_id", "error_code", "error_message",
                  "created_at", "sent_at", "delivered_at", "completed_at"]

    def get_next_attempt_at(self, obj: Delivery) -> str | None:
        return obj.due_at.isoformat() if obj.status == "retrying" and obj.due_at else None


class DeliveryWithTimelineSerializer(DeliverySerializer):
    timeline = DeliveryEventSerializer(source="events", many=True)

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "timeline"]


class DeliverySummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    recipient = serializers.CharField()
    channel = serializers.CharField()
    status = serializers.CharField()


class TemplateRefSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="template.id")
    key = serializers.CharField(source="template.key")
    version = serializers.IntegerField()


class NotificationSerializer(serializers.ModelSerializer):
    template = TemplateRefSerializer(source="template_version")

    class Meta:
        model = Notification
        fields = ["id", "status", "priority", "category", "channels", "template", "variables",
                  "metadata", "scheduled_at", "recipient_count", "created_at", "updated_at",
                  "completed_at"]


class NotificationDetailSerializer(NotificationSerializer):
    deliveries = serializers.SerializerMethodField()

    class Meta(NotificationSerializer.Meta):
        fields = [*NotificationSerializer.Meta.fields, "deliveries"]

    @extend_schema_field(DeliveryWithTimelineSerializer(many=True))
    def get_deliveries(self, obj: Notification) -> list[dict[str, Any]]:
        from ..selectors import DETAIL_DELIVERY_LIMIT

        rows = list(obj.deliveries.all())[:DETAIL_DELIVERY_LIMIT]
        return list(DeliveryWithTimelineSerializer(rows, many=True).data)


class NotificationAcceptedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=NotificationStatus.choices)
    created_at = serializers.DateTimeField()
    scheduled_at = serializers.DateTimeField(allow_null=True)
    deliveries = DeliverySummarySerializer(many=True)


class NotificationStatusSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=NotificationStatus.choices)
    total = serializers.IntegerField()
    counts = serializers.DictField(child=serializers.IntegerField())
    updated_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)


class RetryFailedSerializer(serializers.Serializer):
    notification_id = serializers.UUIDField(required=False)
    delivery_ids = serializers.ListField(child=serializers.UUIDField(), required=False,
                                         max_length=10_000)
    failed_after = serializers.DateTimeField(required=False)
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=10_000, default=1000)


class RetryFailedResultSerializer(serializers.Serializer):
    redriven = serializers.IntegerField()
