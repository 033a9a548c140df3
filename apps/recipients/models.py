from __future__ import annotations

import uuid

from django.contrib.postgres.indexes import GinIndex
from django.db import models

from apps.clients.models import Client
from apps.core.encrypted_fields import (
    EncryptedCharField,
    EncryptedEmailField,
    PIIHashField,
    PIIManager,
)


class Recipient(models.Model):
    """Someone a client sends to, known by the client's own id for them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: the unique (client, external_id) index serves every lookup by client
    # (a second one only costs writes, and a prepared lookup planned on a small table took it).
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="recipients",
                               db_index=False)
    external_id = models.CharField(max_length=200)
    # Encrypted at rest (apps/core/encrypted_fields.py); looked up by their keyed hashes.
    email = EncryptedEmailField(max_length=254, blank=True)
    phone = EncryptedCharField(max_length=20, blank=True, help_text="E.164, e.g. +14155550100")
    whatsapp = EncryptedCharField(max_length=20, blank=True, help_text="E.164")
    email_hash = PIIHashField(source="email")
    phone_hash = PIIHashField(source="phone")
    whatsapp_hash = PIIHashField(source="whatsapp")
    locale = models.CharField(max_length=15, blank=True, default="en")
    timezone = models.CharField(max_length=64, blank=True, default="UTC")
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PIIManager()

    class Meta:
        ordering = ["external_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["client", "external_id"], name="recipient_unique_external_id"
            )
        ]
        indexes = [
            # Inbound STOP/START find every recipient with the sending number; support finds
            # a recipient by exact address (admin search).
            models.Index(fields=["phone_hash"], name="recipient_phone_hash",
                         condition=~models.Q(phone_hash="")),
            models.Index(fields=["whatsapp_hash"], name="recipient_whatsapp_hash",
                         condition=~models.Q(whatsapp_hash="")),
            models.Index(fields=["email_hash"], name="recipient_email_hash",
                         condition=~models.Q(email_hash="")),
            # Segments: `equals` and list `contains` compile to attributes @> '…'.
            GinIndex(fields=["attributes"], name="recipient_attributes_gin",
                     opclasses=["jsonb_path_ops"]),
        ]

    def __str__(self) -> str:
        return self.external_id

    def address_for(self, channel: str) -> str:
        """The address a channel sends to ("" if none). Push is addressed to the recipient's
        active devices, resolved at send time: the recipient id stands in as its address."""
        if channel == "push":
            return self.external_id if getattr(self, "has_active_device", False) else ""
        if channel == "in_app":  # everyone has an inbox, known by their id
            return self.external_id
        # Only the channel's own fields are read: the others may be deferred (not decrypted).
        if channel == "email":
            return self.email
        if channel == "sms":
            return self.phone
        if channel == "whatsapp":
            return self.whatsapp or self.phone
        return ""


class DevicePlatform(models.TextChoices):
    ANDROID = "android"
    IOS = "ios"
    WEB = "web"


class Device(models.Model):
    """A push token of a recipient's device. Deactivated (never deleted) when FCM reports it
    unregistered or invalid, so the history of what was sent where stays readable."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="+")
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="devices")
    token = models.CharField(max_length=4096)
    platform = models.CharField(max_length=10, choices=DevicePlatform.choices)
    is_active = models.BooleanField(default=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    deactivation_reason = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A token identifies one app install: registering it for another recipient moves it.
            models.UniqueConstraint(fields=["client", "token"], name="device_unique_token"),
        ]
        indexes = [
            models.Index(fields=["recipient"], name="device_active_by_recipient",
                         condition=models.Q(is_active=True)),
        ]

    def __str__(self) -> str:
        return f"{self.platform} …{self.token[-8:]}"
