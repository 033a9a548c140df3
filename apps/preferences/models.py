"""A recipient's notification preferences, and the evidence of every consent change.

One `PreferenceProfile` row per recipient that has ever changed anything (a recipient without one
gets the defaults: every channel on, no category opted out, no quiet hours, no caps), so the
send-time check reads one row per recipient. `ConsentRecord` is append-only: every change of a
profile writes its records in the same transaction (services.py).
"""

from __future__ import annotations

from django.contrib.postgres.indexes import BrinIndex, GinIndex
from django.db import models

from apps.clients.models import Client
from apps.core.encrypted_fields import EncryptedCharField, PIIHashField, PIIManager
from apps.recipients.models import Recipient


class ConsentAction(models.TextChoices):
    OPT_IN = "opt_in"
    OPT_OUT = "opt_out"
    # Not consent as such (quiet hours, frequency caps, channel quiet hours): recorded all the
    # same, so the history explains every value a profile ever had.
    UPDATE = "update"
    # The one message confirming an opt-out (a STOP) was sent: detail names its delivery.
    CONFIRMED = "confirmed"


class ConsentSource(models.TextChoices):
    API = "api"
    ADMIN = "admin"
    LINK = "link"  # the signed unsubscribe link (List-Unsubscribe one-click or its page)
    SMS_KEYWORD = "sms_keyword"  # STOP / START texted to one of our numbers
    WHATSAPP_KEYWORD = "whatsapp_keyword"
    PREFERENCE_CENTER = "preference_center"  # the recipient's hosted page (/preferences/<token>/)


class FrequencyPeriod(models.TextChoices):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"


class PreferenceProfile(models.Model):
    """What a recipient agreed to receive, and when.

    - `channels`: `{"sms": {"enabled": false}, "email": {"enabled": true,
      "quiet_hours": "22:00-08:00"}}`; a channel not listed is enabled. A channel's
      `quiet_hours` replaces the profile's window for that channel (same time zone).
    - `categories`: `{"marketing": false, "updates": true}`; only `false` suppresses.
    - quiet hours: local wall-clock times in `quiet_hours_timezone`, or the recipient's own
      time zone when that is blank; `start > end` crosses midnight.
    - `frequency_caps`: `{"marketing": {"limit": 3, "period": "day"}}`.
    - `version` goes up with every change (cache entries carry it).
    """

    recipient = models.OneToOneField(
        Recipient, on_delete=models.CASCADE, primary_key=True, related_name="preference_profile"
    )
    # No index of its own: prefprofile_client_updated (client, updated_at) serves it.
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="+", db_index=False)
    channels = models.JSONField(default=dict, blank=True)
    categories = models.JSONField(default=dict, blank=True)
    quiet_hours_start = models.TimeField(null=True, blank=True)
    quiet_hours_end = models.TimeField(null=True, blank=True)
    quiet_hours_timezone = models.CharField(
        max_length=64, blank=True, help_text="IANA zone; blank = the recipient's time zone."
    )
    frequency_caps = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [
            # Admin list per client, newest changes first.
            models.Index(fields=["client", "-updated_at"], name="prefprofile_client_updated"),
            # "Who opted out of marketing / turned SMS off?" (admin filters, segments):
            # containment queries (`categories @> '{"marketing": false}'`).
            GinIndex(fields=["categories"], name="prefprofile_categories_gin",
                     opclasses=["jsonb_path_ops"]),
            GinIndex(fields=["channels"], name="prefprofile_channels_gin",
                     opclasses=["jsonb_path_ops"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(quiet_hours_start__isnull=True, quiet_hours_end__isnull=True)
                    | models.Q(quiet_hours_start__isnull=False, quiet_hours_end__isnull=False)
                ),
                name="prefprofile_quiet_hours_both_or_none",
            )
        ]

    def __str__(self) -> str:
        return f"preferences of {self.recipient_id}"


class ConsentRecord(models.Model):
    """One change of consent (or of another preference), who made it, from where. Never
    changed or deleted by the application; removed only with its recipient (erasure)."""

    id = models.BigAutoField(primary_key=True)
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="+")
    recipient = models.ForeignKey(
        Recipient, on_delete=models.CASCADE, related_name="consent_records"
    )
    channel = models.CharField(max_length=20, blank=True)
    category = models.CharField(max_length=50, blank=True)
    action = models.CharField(max_length=10, choices=ConsentAction.choices)
    source = models.CharField(max_length=20, choices=ConsentSource.choices)
    # "api_key:<prefix>", "admin:<username>", the texting number, or the unsubscribing address:
    # encrypted at rest, found by exact value through its keyed hash (admin search).
    actor = EncryptedCharField(max_length=200, blank=True)
    actor_hash = PIIHashField(source="actor")
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    # What changed: {"field": "quiet_hours", "before": …, "after": …}, the keyword texted …
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = PIIManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The consent history of one recipient (API and admin), newest first.
            models.Index(fields=["recipient", "-created_at", "-id"], name="consent_recipient_created"),
            # The admin's list for one client, newest first.
            models.Index(fields=["client", "-created_at", "-id"], name="consent_client_created"),
            # Append-only: a tiny BRIN index serves the admin's unfiltered list and date drill-down.
            BrinIndex(fields=["created_at"], name="consent_created_brin"),
        ]

    def __str__(self) -> str:
        what = self.channel or self.category
        return f"{self.action} {what} ({self.source})"
