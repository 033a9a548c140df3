from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from apps.core.fields import StrictTypesMixin, validate_no_nul
from apps.notifications.api.serializers import SendContentSerializer

from ..models import Segment

DEFINITION_SCHEMA = {
    "type": "object",
    "description": 'A criteria tree: {"all": [...]} / {"any": [...]} groups (at most 5 deep) '
                   'of conditions {"attribute", "op", "value"} (at most 50). See '
                   "docs/scheduling.md.",
    "example": {"all": [{"attribute": "plan", "op": "equals", "value": "pro"},
                        {"attribute": "orders.count", "op": "gte", "value": 3},
                        {"attribute": "recipient.has_email", "op": "equals", "value": True}]},
}


@extend_schema_field(DEFINITION_SCHEMA)
class DefinitionField(serializers.JSONField):
    """Any JSON here; the segment service checks it and names the path of each bad node."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        validate_no_nul(value)
        return value


class SegmentInputSerializer(StrictTypesMixin, serializers.Serializer):
    name = serializers.CharField(max_length=200)
    key = serializers.SlugField(max_length=100)
    definition = DefinitionField()


class SegmentUpdateSerializer(SegmentInputSerializer):
    """PUT: fields left out keep their value."""

    name = serializers.CharField(max_length=200, required=False)
    key = serializers.SlugField(max_length=100, required=False)
    definition = DefinitionField(required=False)


class SegmentOutputSerializer(serializers.ModelSerializer):
    definition = DefinitionField()

    class Meta:
        model = Segment
        fields = ["id", "key", "name", "definition", "created_at", "updated_at"]


class SegmentCountSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    key = serializers.CharField()
    count = serializers.IntegerField()


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Weekly digest to a segment",
            value={"template_id": "weekly_digest", "variables": {"week": "32"},
                   "channels": ["email"], "priority": "low", "category": "marketing"},
            request_only=True,
        )
    ]
)
class SegmentSendSerializer(SendContentSerializer):
    """The send body of POST /notifications without `recipients`."""


class SegmentSendResultSerializer(serializers.Serializer):
    notifications = serializers.ListField(child=serializers.UUIDField())
    recipients = serializers.IntegerField(help_text="Recipients the notifications go to.")
    skipped = serializers.IntegerField(
        help_text="Segment members left out: no address for a requested channel."
    )


def send_result(notifications: list[Any], matching: int) -> dict[str, Any]:
    recipients = sum(n.recipient_count for n in notifications)
    return {"notifications": [str(n.id) for n in notifications], "recipients": recipients,
            "skipped": max(matching - recipients, 0)}
