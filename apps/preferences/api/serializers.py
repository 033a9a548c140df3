from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from apps.core.fields import StrictTypesMixin, validate_timezone
from apps.notifications.models import Channel

from ..models import ConsentRecord, FrequencyPeriod
from ..services import PreferenceChanges, QuietHours
from ..timing import Window

# The same names a notification's category may have (notifications API).
CATEGORY_PATTERN = r"^[a-z0-9_.-]{1,50}$"
_CATEGORY = serializers.RegexField(CATEGORY_PATTERN)
TIME_FORMATS = ["%H:%M"]


MAX_KEYS = 200


def _check_keys(value: dict[str, Any], *, allowed: list[str] | None = None) -> dict[str, Any]:
    if len(value) > MAX_KEYS:
        raise serializers.ValidationError(f"At most {MAX_KEYS} entries.")
    errors: dict[str, list[str]] = {}
    for key in value:
        if allowed is not None and key not in allowed:
            errors[key] = [f"Unknown channel; use one of {', '.join(allowed)}."]
        elif allowed is None:
            try:
                _CATEGORY.run_validation(key)
            except serializers.ValidationError:
                errors[key] = ["A category is 1-50 characters: a-z, 0-9, '_', '.', '-'."]
    if errors:
        raise serializers.ValidationError(errors)
    return value


def _window(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    try:
        return str(Window.parse(value))
    except ValueError as exc:
        raise serializers.ValidationError(str(exc)) from exc


_CLOCK_ASCII = r"([01][0-9]|2[0-3]):[0-5][0-9]"


@extend_schema_field({
    # HH:MM-HH:MM whose end differs from its start ("22:00-22:00" is refused), or empty (none).
    "type": "string", "nullable": True, "example": "22:00-08:00",
    "pattern": rf"^$|^(?!([0-9]{{2}}:[0-9]{{2}})-\1$){_CLOCK_ASCII}-{_CLOCK_ASCII}$",
})
class WindowField(serializers.CharField):
    """A quiet-hours window "HH:MM-HH:MM" exactly as documented (no surrounding spaces)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if value and not re.fullmatch(f"{_CLOCK_ASCII}-{_CLOCK_ASCII}", value):
            raise serializers.ValidationError("Use HH:MM-HH:MM, e.g. 22:00-08:00.")
        return value


class ChannelSettingsSerializer(StrictTypesMixin, serializers.Serializer):
    enabled = serializers.BooleanField(required=False)
    # Seed 000 names it; only immediate sending exists (no digests).
    frequency = serializers.ChoiceField(choices=["immediate"], required=False)
    quiet_hours = WindowField(required=False, allow_null=True, allow_blank=True)

    def validate_quiet_hours(self, value: str | None) -> str | None:
        return _window(value)


@extend_schema_field({"oneOf": [
    {"type": "boolean"},
    {"type": "object", "properties": {"enabled": {"type": "boolean"}}, "required": ["enabled"]},
]})
class CategorySettingField(serializers.Field):
    """`false` (seed 000) or `{"enabled": false}`."""

    default_error_messages = {"invalid": 'Use true/false or {{"enabled": true/false}}.'}

    def to_internal_value(self, data: Any) -> bool:
        if isinstance(data, dict) and set(data) == {"enabled"}:
            data = data["enabled"]
        if not isinstance(data, bool):
            self.fail("invalid")
        return data

    def to_representation(self, value: Any) -> bool:
        return bool(value)


CLOCK_PATTERN = r"([01][0-9]|2[0-3]):[0-5][0-9]"


@extend_schema_field({"type": "string", "pattern": f"^{CLOCK_PATTERN}$", "example": "22:00"})
class ClockField(serializers.TimeField):
    """HH:MM on a 24-hour clock, exactly (strptime alone would take "9:5")."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(input_formats=TIME_FORMATS, format="%H:%M", **kwargs)

    def to_internal_value(self, value: Any) -> Any:
        if isinstance(value, str) and not re.fullmatch(CLOCK_PATTERN, value):
            self.fail("invalid", format="hh:mm")
        return super().to_internal_value(value)


class QuietHoursSerializer(StrictTypesMixin, serializers.Serializer):
    start = ClockField()
    end = ClockField()
    timezone = serializers.CharField(required=False, allow_blank=True, allow_null=True,
                                     max_length=64, validators=[validate_timezone])

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["start"] == attrs["end"]:
            raise serializers.ValidationError({"end": ["Start and end must differ."]})
        return attrs


class FrequencyCapSerializer(StrictTypesMixin, serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=100_000)
    period = serializers.ChoiceField(choices=FrequencyPeriod.choices)


class PreferenceInputSerializer(StrictTypesMixin, serializers.Serializer):
    """PUT body: every section optional; what is left out is kept (like recipients PUT)."""

    channels = serializers.DictField(child=ChannelSettingsSerializer(), required=False)
    categories = serializers.DictField(child=CategorySettingField(), required=False)
    quiet_hours = QuietHoursSerializer(required=False, allow_null=True)
    frequency_caps = serializers.DictField(child=FrequencyCapSerializer(allow_null=True),
                                           required=False)

    def validate_channels(self, value: dict[str, Any]) -> dict[str, Any]:
        return _check_keys(value, allowed=list(Channel.values))

    def validate_categories(self, value: dict[str, Any]) -> dict[str, Any]:
        return _check_keys(value)

    def validate_frequency_caps(self, value: dict[str, Any]) -> dict[str, Any]:
        return _check_keys(value)

    def changes(self) -> PreferenceChanges:
        data = self.validated_data
        channels = {
            name: {k: v for k, v in spec.items() if k in ("enabled", "quiet_hours")}
            for name, spec in data.get("channels", {}).items()
        }
        quiet = data.get("quiet_hours")
        return PreferenceChanges(
            channels=channels,
            categories=dict(data.get("categories", {})),
            set_quiet_hours="quiet_hours" in data,
            quiet_hours=QuietHours(quiet["start"], quiet["end"], quiet.get("timezone") or "")
            if quiet else None,
            frequency_caps={k: dict(v) if v else None
                            for k, v in data.get("frequency_caps", {}).items()},
        )


@extend_schema_serializer(extensions={"x-at-least-one-of": ["enabled", "quiet_hours"],
                                      "x-presence-only": True})
class ChannelPatchSerializer(StrictTypesMixin, serializers.Serializer):
    enabled = serializers.BooleanField(required=False)
    quiet_hours = WindowField(required=False, allow_null=True, allow_blank=True)

    def validate_quiet_hours(self, value: str | None) -> str | None:
        return _window(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError({"enabled": ["This field is required."]})
        return attrs


@extend_schema_serializer(extensions={"x-at-least-one-of": ["channel", "category"]})
class OptSerializer(StrictTypesMixin, serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    category = serializers.RegexField(
        CATEGORY_PATTERN, required=False,
        error_messages={"invalid": "A category is 1-50 characters: a-z, 0-9, '_', '.', '-'."},
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("channel") and not attrs.get("category"):
            message = ["Give a channel, a category, or both."]
            raise serializers.ValidationError({"channel": message, "category": message})
        return attrs


# -- output --------------------------------------------------------------------------------


class ChannelOutputSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    frequency = serializers.CharField()
    quiet_hours = serializers.CharField(allow_null=True)


class QuietHoursOutputSerializer(serializers.Serializer):
    start = serializers.CharField()
    end = serializers.CharField()
    timezone = serializers.CharField(allow_null=True, help_text="null: the recipient's time zone")


class PreferenceOutputSerializer(serializers.Serializer):
    recipient = serializers.CharField(help_text="Your id for the recipient")
    timezone = serializers.CharField(help_text="The time zone quiet hours and caps use")
    channels = serializers.DictField(child=ChannelOutputSerializer())
    categories = serializers.DictField(child=serializers.BooleanField())
    quiet_hours = QuietHoursOutputSerializer(allow_null=True)
    frequency_caps = serializers.DictField(child=FrequencyCapSerializer())
    critical_categories = serializers.ListField(child=serializers.CharField())
    version = serializers.IntegerField()
    updated_at = serializers.DateTimeField(allow_null=True)


class ConsentOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConsentRecord
        fields = ["id", "channel", "category", "action", "source", "actor", "ip", "user_agent",
                  "detail", "created_at"]
