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
    # The last step of every locale fallback (`fr-CA` → `fr` → default_locale).
    default_locale = models.CharField(max_length=15, default="en")
    # The default locale's active version (kept in step with TemplateActiveVersion by the
    # publish services): the send path pins it when it does not pick per recipient.
    active_version = models.ForeignKey(
        "TemplateVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Variables the admin preview renders with; required variables missing here are shown as
    # `{name}` placeholders. Never used for real sends.
    sample_variables = models.JSONField(default=dict, blank=True)
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
    """One immutable version of a template's content in one locale. Never edited after
    creation: a notification renders exactly the version it was accepted with. Numbers count
    per template and locale (`en` v3, `fr` v1). A version that was never published is a draft;
    which one is live per locale is `TemplateActiveVersion`."""

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
    # In-app (the recipient's inbox, docs/inbox.md): title and body fall back to push's, then
    # the email subject / text; the action URL and the data's string values are templates too.
    in_app_title = models.CharField(max_length=500, blank=True)
    in_app_body = models.TextField(blank=True)
    in_app_action_url = models.CharField(max_length=2000, blank=True)
    in_app_data = models.JSONField(default=dict, blank=True)
    # Variables the sources need, derived from them at creation (checked at accept time).
    required_variables = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["template_id", "locale", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["template", "locale", "version"], name="template_version_unique_number"
            )
        ]
        permissions = [
            ("publish_templateversion", "Can publish and roll back template versions"),
        ]

    def __str__(self) -> str:
        return f"{self.template.key} {self.locale} v{self.version}"


class TemplateActiveVersion(models.Model):
    """Which version of a template is live for one locale. Publishing or rolling back moves
    this pointer (and appends a TemplatePublication); versions themselves never change."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="active_versions")
    locale = models.CharField(max_length=15)
    version = models.ForeignKey(TemplateVersion, on_delete=models.PROTECT, related_name="+")
    published_at = models.DateTimeField()
    published_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["locale"]
        constraints = [
            models.UniqueConstraint(fields=["template", "locale"], name="template_active_locale")
        ]

    def __str__(self) -> str:
        return f"{self.template_id} {self.locale} → v{self.version_id}"


class PublicationAction(models.TextChoices):
    PUBLISH = "publish"
    ROLLBACK = "rollback"


class TemplatePublication(models.Model):
    """Append-only history of publishes and rollbacks: who made which version live, when,
    and which one it replaced."""

    id = models.BigAutoField(primary_key=True)
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="publications")
    locale = models.CharField(max_length=15)
    version = models.ForeignKey(TemplateVersion, on_delete=models.CASCADE, related_name="publications")
    previous_version = models.ForeignKey(
        TemplateVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    action = models.CharField(max_length=10, choices=PublicationAction.choices)
    actor = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["template", "-id"], name="template_publication_recent")]

    def __str__(self) -> str:
        return f"{self.action} {self.locale} v{self.version_id}"
