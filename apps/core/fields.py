"""Serializer fields shared by the API."""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

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
