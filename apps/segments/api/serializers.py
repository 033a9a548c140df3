from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from apps.core.fields import StrictTypesMixin, validate_no_nul
from apps.notifications.api.serializers import SendContentSerializer

from .. import criteria
from ..models import Segment


def _condition_schema() -> dict[str, Any]:
    """A condition, as apps/segments/criteria.py checks it: the value's type follows the op, and
    the recipient's own fields (`recipient.*`) take fewer ops."""
    text = {"type": "string", "maxLength": criteria.MAX_STRING_LENGTH}
    scalar = {"anyOf": [text, {"type": "number"}, {"type": "boolean"}]}
    scalars = {"type": "array", "minItems": 1, "maxItems": criteria.MAX_IN_VALUES,
               "items": scalar}
    texts = {**scalars, "items": text}
    part = r"[A-Za-z0-9_]*[A-Za-z_][A-Za-z0-9_]*"  # not digits only (an array index)
    path = {"type": "string", "maxLength": criteria.MAX_KEY_LENGTH,
            "pattern": rf"^(?!{re.escape(criteria.RECIPIENT_PREFIX)})"
                       rf"{part}(\.{part}){{0,{criteria.MAX_PATH_PARTS - 1}}}$"}
    flags = {"enum": [criteria.RECIPIENT_PREFIX + f for f in criteria.RECIPIENT_FLAGS]}
    fields = {"enum": [criteria.RECIPIENT_PREFIX + f for f in criteria.RECIPIENT_TEXT_FIELDS]}

    def when(attribute: dict[str, Any], ops: list[str], value: dict[str, Any] | None,
             ) -> dict[str, Any]:
        properties = {"attribute": attribute, "op": {"type": "string", "enum": ops}}
        if value is not None:
            properties["value"] = value
        return {"type": "object", "properties": properties, "additionalProperties": False,
                "required": ["attribute", "op", *(["value"] if value is not None else [])]}

    boolean = {"type": "boolean"}

    def exists(attribute: dict[str, Any]) -> dict[str, Any]:
        rule = when(attribute, ["exists"], None)  # value optional (true when absent)
        return {**rule, "properties": {**rule["properties"], "value": boolean}}

    return {"anyOf": [
        when(path, ["equals"], scalar),
        when(path, ["in"], scalars),
        when(path, ["gt", "gte", "lt", "lte"], {"anyOf": [{"type": "number"}, text]}),
        when(path, ["contains"], {"anyOf": [scalar, scalars]}),
        exists(path),
        when(flags, ["equals"], boolean),
        exists(fields),
        when(fields, ["in"], texts),
        when(fields, ["equals", "contains"], text),
    ]}


# A node: a condition, or an `all` / `any` group of nodes (recursive; criteria.py allows groups
# MAX_DEPTH deep and MAX_LEAVES conditions in all, which JSON Schema cannot count).
SEGMENT_NODE_SCHEMA = {"anyOf": [
    {"$ref": "#/components/schemas/SegmentCondition"},
    {"type": "object", "additionalProperties": False, "required": ["all"],
     "properties": {"all": {"type": "array", "items": {"$ref": "#/components/schemas/SegmentNode"}}}},
    {"type": "object", "additionalProperties": False, "required": ["any"],
     "properties": {"any": {"type": "array", "minItems": 1,
                            "items": {"$ref": "#/components/schemas/SegmentNode"}}}},
]}


SEGMENT_CONDITION_SCHEMA = _condition_schema()  # components, added by apps/core/openapi.py
DEFINITION_SCHEMA = {
    **SEGMENT_NODE_SCHEMA,
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
