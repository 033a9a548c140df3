"""Outbound client webhooks: the endpoints clients register, the outbox of messages to send
them (one row per endpoint and event) and the log of every delivery attempt.

Inbound provider callbacks (apps/webhooks/inbound/) have no models: they update deliveries.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from apps.clients.models import Client


class WebhookEndpoint(models.Model):
    """A URL of a client's that receives signed events (Standard Webhooks)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=500, blank=True)
    # Event types this endpoint receives; empty means every type.
    event_types = models.JSONField(default=list, blank=True)
    # `whsec_` + base64 of random bytes. Kept in clear: HMAC signing needs the key itself.
    # Shown to the client once (create, rotate); never in a list, a detail or the admin.
    secret = models.CharField(max_length=100, editable=False)
    # After a rotation the old secret still signs (a second signature) until this time.
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set by the first failed attempt after a success; cleared by the next success.
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    # Endpoint backoff (as Svix does): while the endpoint cannot be reached or answers 429/5xx,
    # its queued messages wait (parked) and only one probe request, the oldest due message, is
    # made at `next_probe_at`; a probe that succeeds clears both and drains the queue in order.
    # `probe_failures`: failed backoff steps in a row (picks the next wait).
    next_probe_at = models.DateTimeField(null=True, blank=True, editable=False)
    probe_failures = models.PositiveSmallIntegerField(default=0, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=300, blank=True, editable=False)
    # DELETE keeps the row (its messages and attempts are history) without its secret.
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["client", "-created_at"], name="webhook_endpoint_client"),
            # The relay sweeper's probe scan: endpoints in backoff only.
            models.Index(fields=["next_probe_at"], name="webhook_endpoint_backoff",
                         condition=Q(next_probe_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return self.url

    @property
    def is_enabled(self) -> bool:
        return self.disabled_at is None and self.deleted_at is None


class WebhookMessageStatus(models.TextChoices):
    PENDING = "pending"  # waiting for its next attempt (next_attempt_at)
    SENDING = "sending"  # an attempt is in flight (lease_until)
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # every attempt failed, or the endpoint was disabled or deleted


class WebhookMessage(models.Model):
    """One event for one endpoint: the outbox row, written in the transaction that changed the
    delivery, and where its delivery stands. Its id is the `webhook-id` header, the same on
    every attempt and replay, so receivers can de-duplicate."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="messages")
    event_type = models.CharField(max_length=50)
    # The body as sent: {"type", "timestamp", "data"}.
    payload = models.JSONField()
    # Not foreign keys: the history outlives deliveries; for search and replay only.
    delivery_id = models.UUIDField(null=True, blank=True)
    notification_id = models.UUIDField(null=True, blank=True)
    # Unique per endpoint when set: an event that must be sent once (a notification's
    # completion with its final status) is inserted once however often it is detected.
    dedupe_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    # The request id of the send that caused it (its `notification.send` audit row), sent as
    # the `X-Request-Id` header: the client can match it with the id its send was answered with.
    request_id = models.CharField(max_length=64, blank=True, default="", db_default="")
    status = models.CharField(max_length=20, choices=WebhookMessageStatus.choices,
                              default=WebhookMessageStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # When the relay sweeper may publish it again (lost task message, worker died mid-attempt).
    # NULL on a pending message: parked behind its endpoint's backoff (the sweeper leaves it
    # alone; the endpoint's probe, then its drain, send it).
    lease_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["endpoint", "-created_at"], name="webhook_message_endpoint"),
            # The relay sweeper's scan: only messages still in flight are indexed.
            models.Index(fields=["lease_until"], name="webhook_message_inflight",
                         condition=Q(status__in=["pending", "sending"])),
            # An endpoint's queue, oldest first: the probe's pick and the drain's batches.
            models.Index(fields=["endpoint", "created_at"], name="webhook_message_queue",
                         condition=Q(status="pending")),
            models.Index(fields=["delivery_id"], name="webhook_message_delivery",
                         condition=Q(delivery_id__isnull=False)),
        ]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "dedupe_key"],
                                    condition=Q(dedupe_key__isnull=False),
                                    name="webhook_message_unique_dedupe"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP attempt to deliver a message: what the endpoint answered, or why not."""

    id = models.BigAutoField(primary_key=True)
    message = models.ForeignKey(WebhookMessage, on_delete=models.CASCADE, related_name="attempt_log")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="attempts")
    attempt = models.PositiveSmallIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    succeeded = models.BooleanField(default=False)
    # Machine code and text: `http_503`, `timeout`, `connection_error`, `blocked_address` …
    error_code = models.CharField(max_length=50, blank=True)
    error = models.CharField(max_length=500, blank=True)
    response_body = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["endpoint", "-created_at"], name="webhook_attempt_endpoint"),
            models.Index(fields=["message", "id"], name="webhook_attempt_message"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.attempt} of {self.message_id}: {self.status_code or self.error_code}"
