from __future__ import annotations

from rest_framework import serializers

from apps.core.fields import BoundedJSONObjectField, StrictTypesMixin, validate_e164, validate_timezone

from ..models import Device, DevicePlatform, Recipient

E164_ASCII = r"^\+[1-9][0-9]{6,14}$"


class RecipientInputSerializer(StrictTypesMixin, serializers.Serializer):
    email = serializers.EmailField(required=False, allow_blank=True, max_length=254)
    # The pattern documents E.164 in ASCII digits; validate_e164 is the shared check.
    phone = serializers.RegexField(E164_ASCII, required=False, allow_blank=True,
                                   validators=[validate_e164])
    whatsapp = serializers.RegexField(E164_ASCII, required=False, allow_blank=True,
                                      validators=[validate_e164])
    locale = serializers.RegexField(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$", required=False,
                                    max_length=15)
    timezone = serializers.CharField(required=False, max_length=64, validators=[validate_timezone])
    attributes = BoundedJSONObjectField(required=False)


class InlineRecipientSerializer(RecipientInputSerializer):
    id = serializers.CharField(max_length=200)


class RecipientOutputSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="external_id")

    class Meta:
        model = Recipient
        fields = ["id", "email", "phone", "whatsapp", "locale", "timezone", "attributes",
                  "created_at", "updated_at"]


class DeviceInputSerializer(StrictTypesMixin, serializers.Serializer):
    token = serializers.CharField(max_length=4096)
    platform = serializers.ChoiceField(choices=DevicePlatform.choices)


class DeviceDeleteSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=4096)


class DeviceOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = ["id", "token", "platform", "is_active", "deactivated_at", "deactivation_reason",
                  "created_at"]
