from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models

from apps.core.encrypted_fields import EncryptedCharField


class Client(models.Model):
    """A tenant: one product team or service. Everything a client owns points here."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    is_active = models.BooleanField(default=True)
    default_from_email = models.CharField(
        max_length=254, blank=True, help_text="Sender for email; empty uses the service default."
    )
    sms_from = models.CharField(
        max_length=20, blank=True, help_text="SMS sender (E.164 or alphanumeric); empty: default."
    )
    whatsapp_from = models.CharField(
        max_length=20, blank=True, help_text="WhatsApp sender (E.164); empty uses the default."
    )
    sms_opt_out_confirmation = models.CharField(
        max_length=320, blank=True,
        help_text="The one SMS confirming a STOP (no marketing); empty: the service default.")
    whatsapp_opt_out_confirmation = models.CharField(
        max_length=320, blank=True,
        help_text="The one WhatsApp message confirming a STOP; empty: the service default.")
    notify_email = models.EmailField(
        blank=True, help_text="Where NotifyHub tells this client about its account (e.g. a "
                              "webhook endpoint disabled after failing); empty: nobody.")
    delivery_policy = models.JSONField(
        default=dict, blank=True,
        help_text='Retry overrides, for all channels ("*") or one: {"sms": {"max_attempts": 3, '
                  '"initial_seconds": 2, "max_seconds": 120, "jitter": 0.25}}. Empty: defaults.',
    )
    provider_order = models.JSONField(
        default=dict, blank=True,
        help_text='Provider order per channel for this client, primary first: {"sms": '
                  '["vonage_sms", "twilio_sms"]}. Providers left out follow in the service\'s '
                  'order (CHANNEL_PROVIDERS). Empty: the service\'s order.',
    )
    # The in-app inbox (docs/inbox.md): the key recipient tokens are signed with (HS256),
    # encrypted at rest, shown once when it is (re)generated; and the browser origins allowed
    # to call the inbox API (CORS).
    inbox_signing_secret = EncryptedCharField(max_length=128, blank=True, editable=False)
    inbox_allowed_origins = ArrayField(
        models.CharField(max_length=200), default=list, blank=True,
        help_text="Browser origins allowed to call the inbox API and its stream (CORS), e.g. "
                  "https://app.example.com (scheme, host and port; no path). Empty: none.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from apps.notifications.policy import validate_overrides
        from apps.notifications.providers.registry import validate_provider_order

        errors: dict[str, list[str]] = {}
        problems = validate_overrides(self.delivery_policy)
        if problems:
            errors["delivery_policy"] = problems
        problems = validate_provider_order(self.provider_order)
        if problems:
            errors["provider_order"] = problems
        from apps.inbox.origins import validate_origins

        problems = validate_origins(self.inbox_allowed_origins)
        if problems:
            errors["inbox_allowed_origins"] = problems
        if errors:
            raise ValidationError(errors)

    # DRF treats the authenticated principal as a user; a client is one.
    is_authenticated = True
    is_anonymous = False


class Scope(models.TextChoices):
    """What an API key may do. Every API view declares the scope each method needs
    (`required_scopes`, apps/clients/scopes.py); docs/api.md has the table."""

    SEND = "send", "send: send, cancel, delete; write recipients, devices, preferences, segments, schedules"
    READ = "read", "read: read notifications, recipients, preferences, segments, schedules, metrics"
    TEMPLATES = "templates", "templates: create, change, publish and delete templates"
    WEBHOOKS = "webhooks", "webhooks: manage webhook endpoints (secrets, tests, replays)"
    ADMIN = "admin", "admin: re-drive dead letters, queue and system status, audit log"


def all_scopes() -> list[str]:
    return [scope.value for scope in Scope]


class KeyMode(models.TextChoices):
    """A live key sends through the real providers; a test key's notifications go to the
    provider sandbox only (TEST_MODE_* settings) and it sees only test notifications."""

    LIVE = "live", "live"
    TEST = "test", "test (sandbox only)"


def key_mode(*, is_test: bool) -> KeyMode:
    """The mode of something a key of that kind created (a notification, a schedule)."""
    return KeyMode.TEST if is_test else KeyMode.LIVE


class ApiKey(models.Model):
    """An API key. Only a SHA-256 hash of the secret is stored; the prefix is kept to find and
    show it. The full key is shown once, when it is created. Its scopes limit what it may do;
    its mode (live or test) is fixed at creation and visible in the key itself (`nh_test_…`)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    scopes = ArrayField(
        models.CharField(max_length=20, choices=Scope.choices), default=all_scopes,
        help_text="What the key may do; a request outside them is refused (403 insufficient_scope).",
    )
    mode = models.CharField(
        max_length=4, choices=KeyMode.choices, default=KeyMode.LIVE,
        help_text="Test keys send only to the provider sandbox and see only test notifications.",
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def is_test(self) -> bool:
        return self.mode == KeyMode.TEST

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
