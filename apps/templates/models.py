from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models

from apps.clients.models import Client


class Template(models.Model):
    """A message a client sends, by key. Its content lives in immutable versions."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="templates")
    key = models.SlugField(max_length=100, help_text="Stable name used by senders.")
    name = models.CharField(max_length=200)
    channels = ArrayField(models.CharField(max_length=20), default=list)
    category = models.CharField(max_length=50, default="transactional")
    active_version = models.ForeignKey(
        "TemplateVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(fields=["client", "key"], name="template_unique_key")
        ]

    def __str__(self) -> str:
        return self.key


class TemplateVersion(models.Model):
    """One immutable version of a template's content. Never edited after creation: a
    notification renders exactly the version it was accepted with."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    locale = models.CharField(max_length=15, default="en")
    subject = models.CharField(max_length=998, blank=True)
    text_body = models.TextField(blank=True)
    html_body = models.TextField(blank=True)
    sms_body = models.TextField(blank=True)
    whatsapp_body = models.TextField(blank=True)
    # An approved WhatsApp template (Twilio Content API SID, "HX…"): required to start a
    # conversation outside the 24-hour window. Variables go as ContentVariables.
    whatsapp_content_sid = models.CharField(max_length=64, blank=True)
    push_title = models.CharField(max_length=200, blank=True)
    push_body = models.TextField(blank=True)
    push_data = models.JSONField(default=dict, blank=True)
    # Variables the sources need, derived from them at creation (checked at accept time).
    required_variables = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["template", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["template", "version"], name="template_version_unique_number"
            )
        ]

    def __str__(self) -> str:
        return f"{self.template.key} v{self.version}"
