"""Serializer fields shared by the API."""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

from django.http import QueryDict
from rest_framework import serializers

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def validate_e164(value: str) -> None:
    if value and not E164.match(value):
        raise serializers.ValidationError("Use E.164 format, e.g. +14155550100.")


def validate_timezone(value: str) -> None:
    if value:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise serializers.ValidationError("Unknown IANA time zone.") from exc


def has_nul(value: Any) -> bool:
    """A NUL character in any string or key of a JSON value (PostgreSQL text and jsonb cannot
    store one)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_nul(item) for item in value)
    return False


def validate_no_nul(value: Any) -> None:
    if has_nul(value):
        raise serializers.ValidationError("NUL characters (\\u0000) are not allowed.")


class BoundedJSONObjectField(serializers.DictField):
    """A JSON object whose encoded size is bounded (variables, metadata, attributes)."""

    def __init__(self, *args: Any, max_bytes: int = 32_768, **kwargs: Any) -> None:
        self.max_bytes = max_bytes
        super().__init__(*args, **kwargs)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        import json

        value = super().to_internal_value(data)
        validate_no_nul(value)
        if len(json.dumps(value, default=str)) > self.max_bytes:
            raise serializers.ValidationError(f"Must be at most {self.max_bytes} bytes as JSON.")
        return dict(value)


def _type_problem(field: serializers.Field, value: Any) -> str | None:
    """What is wrong with the JSON type of `value` for `field`, or None. DRF coerces what JSON
    keeps apart: 123 → "123" for a string, false → UUID 0, "yes"/1 → True for a boolean."""
    if value is None:
        return None  # allow_null decides
    if isinstance(field, serializers.CharField | serializers.UUIDField):
        return None if isinstance(value, str) else "Not a valid string."
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be a valid boolean."
    if isinstance(field, serializers.IntegerField):
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        return None if whole and not isinstance(value, bool) else "A valid integer is required."
    return None


# For serializers of JSON bodies: a value of the wrong JSON type is a 400 naming the field
# (lists and dicts of scalars name the item: `channels[1]`), as the OpenAPI schema says.
# (A comment, not a docstring: drf-spectacular would show it as every serializer's description.)
class StrictTypesMixin:

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and not isinstance(data, QueryDict):  # query strings are text
            errors: dict[str, Any] = {}
            for field in self._writable_fields:  # type: ignore[attr-defined]
                if field.field_name not in data or field.field_name is None:
                    continue
                name: str = field.field_name
                value = data[name]
                problem = _type_problem(field, value)
                if problem:
                    errors[name] = [problem]
                elif isinstance(field, serializers.ListField) and isinstance(value, list):
                    items = {i: [p] for i, item in enumerate(value)
                             if (p := _type_problem(field.child, item))}
                    if items:
                        errors[name] = items
                elif isinstance(field, serializers.DictField) and isinstance(value, dict):
                    entries = {k: [p] for k, item in value.items()
                               if (p := _type_problem(field.child, item))}
                    if entries:
                        errors[name] = entries
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)  # type: ignore[misc]
