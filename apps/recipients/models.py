from __future__ import annotations

import uuid

from django.db import models

from apps.clients.models import Client


class Recipient(models.Model):
    """Someone a client sends to, known by the client's own id for them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="recipients")
    external_id = models.CharField(max_length=200)
    email = models.EmailField(max_length=254, blank=True)
    phone = models.CharField(max_length=20, blank=True, help_text="E.164, e.g. +14155550100")
    whatsapp = models.CharField(max_length=20, blank=True, help_text="E.164")
    locale = models.CharField(max_length=15, blank=True, default="en")
    timezone = models.CharField(max_length=64, blank=True, default="UTC")
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["external_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["client", "external_id"], name="recipient_unique_external_id"
            )
        ]

    def __str__(self) -> str:
        return self.external_id

    def address_for(self, channel: str) -> str:
        return {"email": self.email, "sms": self.phone, "whatsapp": self.whatsapp or self.phone}.get(
            channel, ""
        )
