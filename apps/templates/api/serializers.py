from __future__ import annotations

import json
from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from apps.core.fields import BoundedJSONObjectField, StrictTypesMixin

from ..locales import LOCALE_PATTERN
from ..models import Template, TemplateActiveVersion, TemplateVersion
from ..rendering import CHANNELS

RESERVED_KEYS = frozenset({"search"})  # `/templates/search` is an endpoint
# Labelled like notifications.Channel, so the OpenAPI schema shares one enum.
CHANNEL_CHOICES = [(c, c.replace("_", " ").title()) for c in CHANNELS]


def _text(max_length: int) -> serializers.CharField:
    # Bodies keep their whitespace (trailing newlines matter in text email and SMS).
    return serializers.CharField(required=False, allow_blank=True, max_length=max_length,
                                 trim_whitespace=False)


# services._checked_in_app's rule for an action URL (rendering.is_safe_action_url: http(s), a
# path on the page's own site, or a template starting with a variable), in the OpenAPI schema
# only, so that clients and contract tests know it; the service still answers a bad one with
# its own 422 `invalid_in_app_content`.
ACTION_URL_PATTERN = r"^(\s*(\{\{[\s\S]*|[Hh][Tt][Tt][Pp][Ss]?://[\s\S]*|/([^/\\][^\\]*)?))?$"


@extend_schema_field({"type": "string", "maxLength": 2_000, "pattern": ACTION_URL_PATTERN})
class _ActionUrlField(serializers.CharField):
    pass


def _locale(**kwargs: Any) -> serializers.RegexField:
    return serializers.RegexField(LOCALE_PATTERN, max_length=15, **kwargs)


class RejectUnknownFieldsMixin:
    """A field the operation does not take is a 400 naming it, not silently ignored."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        initial = getattr(self, "initial_data", None)
        if isinstance(initial, dict):
            fields = self.fields  # type: ignore[attr-defined]
            unknown = sorted(set(initial) - set(fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown or read-only field."] for name in unknown})
        return attrs


# A version needs content for at least one channel (422 template_empty otherwise).
CONTENT_FIELDS = ["subject", "text_body", "html_body", "sms_body", "whatsapp_body",
                  "whatsapp_content_sid", "push_title", "push_body", "push_data",
                  "in_app_title", "in_app_body", "in_app_data"]


@extend_schema_serializer(extensions={"x-at-least-one-of": CONTENT_FIELDS})
class VersionContentSerializer(StrictTypesMixin, serializers.Serializer):
    subject = _text(998)
    text_body = _text(100_000)
    html_body = _text(500_000)
    sms_body = _text(10_000)
    whatsapp_body = _text(10_000)
    whatsapp_content_sid = serializers.RegexField(r"^HX[0-9a-fA-F]{32}$", required=False,
                                                  allow_blank=True, max_length=64)
    push_title = _text(200)
    push_body = _text(4_000)
    push_data = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=4_000, trim_whitespace=False),
        required=False,
    )
    # In-app (docs/inbox.md): title and body fall back to push's, then the email's.
    in_app_title = _text(500)
    in_app_body = _text(10_000)
    in_app_action_url = _ActionUrlField(required=False, allow_blank=True, max_length=2_000,
                                        trim_whitespace=False)
    in_app_data = serializers.DictField(
        required=False, help_text="Any JSON object (4 KB at most); string values are templates.")


@extend_schema_serializer(extensions={"x-reject-unknown": True})
class TemplateCreateSerializer(StrictTypesMixin, RejectUnknownFieldsMixin, serializers.Serializer):
    key = serializers.SlugField(max_length=100)
    name = serializers.CharField(max_length=200)
    channels = serializers.ListField(child=serializers.ChoiceField(choices=CHANNEL_CHOICES), min_length=1,
                                     max_length=len(CHANNELS))
    category = serializers.CharField(max_length=50, required=False, default="transactional")
    default_locale = _locale(required=False, default="en")
    sample_variables = BoundedJSONObjectField(required=False)
    version = VersionContentSerializer(
        required=False, help_text="Content of the first version (default locale), published."
    )

    def validate_key(self, value: str) -> str:
        if value.lower() in RESERVED_KEYS:
            raise serializers.ValidationError("This key is reserved.")
        return value


@extend_schema_serializer(extensions={"x-reject-unknown": True})
class TemplateUpdateSerializer(StrictTypesMixin, RejectUnknownFieldsMixin, serializers.Serializer):
    """Fields left out are kept. The key and the content cannot change here (content changes
    are new versions)."""

    name = serializers.CharField(max_length=200, required=False)
    channels = serializers.ListField(child=serializers.ChoiceField(choices=CHANNEL_CHOICES), min_length=1,
                                     max_length=len(CHANNELS), required=False)
    category = serializers.CharField(max_length=50, required=False)
    default_locale = _locale(required=False)
    sample_variables = BoundedJSONObjectField(required=False)


class TemplateListFilterSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=CHANNEL_CHOICES, required=False)
    category = serializers.CharField(max_length=50, required=False)


class TemplateSearchSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False,
                                 help_text="Case-insensitive; matches the key or the name.")
    channel = serializers.ChoiceField(choices=CHANNEL_CHOICES, required=False)


class ActiveVersionSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.version")

    class Meta:
        model = TemplateActiveVersion
        fields = ["locale", "version", "published_at", "published_by"]


class TemplateOutputSerializer(serializers.ModelSerializer):
    active_versions = serializers.SerializerMethodField()

    class Meta:
        model = Template
        fields = ["id", "key", "name", "channels", "category", "default_locale", "sample_variables",
                  "active_versions", "created_at", "updated_at"]

    def get_active_versions(self, obj: Template) -> list[dict[str, Any]]:
        # Prefetched by the selectors: no query per template.
        return list(ActiveVersionSerializer(obj.active_versions.all(), many=True).data)


@extend_schema_serializer(extensions={"x-reject-unknown": True, "x-at-least-one-of": CONTENT_FIELDS})
class VersionCreateSerializer(RejectUnknownFieldsMixin, VersionContentSerializer):
    locale = _locale(required=False, help_text="Default: the template's default locale.")
    publish = serializers.BooleanField(required=False, default=True,
                                       help_text="false: keep it as a draft.")


class VersionOutputSerializer(serializers.ModelSerializer):
    number = serializers.IntegerField(source="version")
    status = serializers.SerializerMethodField(help_text="active, draft (never published) or inactive")
    published_at = serializers.DateTimeField(source="first_published_at", allow_null=True,
                                             help_text="When it was first published.")

    class Meta:
        model = TemplateVersion
        fields = ["id", "number", "locale", "status", "published_at", "required_variables",
                  "subject", "text_body", "html_body", "sms_body", "whatsapp_body",
                  "whatsapp_content_sid", "push_title", "push_body", "push_data", "in_app_title",
                  "in_app_body", "in_app_action_url", "in_app_data", "created_at"]

    def get_status(self, obj: TemplateVersion) -> str:
        if getattr(obj, "is_active", False):
            return "active"
        return "inactive" if getattr(obj, "first_published_at", None) else "draft"


class VersionListFilterSerializer(serializers.Serializer):
    locale = _locale(required=False)


class PublishQuerySerializer(serializers.Serializer):
    locale = _locale(required=False, help_text="Default: the template's default locale.")


class PublishedSerializer(serializers.Serializer):
    template = serializers.UUIDField()
    locale = serializers.CharField()
    version = serializers.IntegerField()
    published_at = serializers.DateTimeField()
    published_by = serializers.CharField()


class PreviewInputSerializer(StrictTypesMixin, serializers.Serializer):
    locale = _locale(required=False, help_text="Default: the template's default locale.")
    version = serializers.IntegerField(
        required=False, min_value=1,
        help_text="A version number of `locale` (drafts too). Default: the active version a "
                  "recipient with `locale` gets (with fallback).",
    )
    variables = BoundedJSONObjectField(required=False, default=dict)


class PreviewQuerySerializer(PreviewInputSerializer):
    variables = serializers.CharField(  # type: ignore[assignment]
        required=False, default="{}", max_length=32_768, help_text="A JSON object."
    )

    def validate_variables(self, value: str) -> dict[str, Any]:
        try:
            parsed = json.loads(value or "{}")
        except json.JSONDecodeError as exc:
            raise serializers.ValidationError("Must be a JSON object.") from exc
        if not isinstance(parsed, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return parsed


class PreviewVersionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    number = serializers.IntegerField()
    locale = serializers.CharField()


class PreviewOutputSerializer(serializers.Serializer):
    template = serializers.UUIDField()
    version = PreviewVersionSerializer()
    channels = serializers.DictField(
        child=serializers.DictField(),
        help_text="email: subject/text/html · sms: body · whatsapp: body/content_sid · "
                  "push: title/body/data · in_app: title/body/action_url/data",
    )
