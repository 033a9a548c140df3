"""The audit log: one append-only row per change someone (or something) made.

Rows are never updated (a database trigger refuses UPDATE, see migration 0001) and deleted only
by retention (`AUDIT_RETENTION_DAYS`). Nothing points at them, and they point loosely at what
they describe: the client by id without a constraint (a row outlives its tenant), the
notification by id only (notifications are deleted after `NOTIFICATION_RETENTION_DAYS`)."""

from __future__ import annotations

from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.clients.models import Client

# Every action a row can have (the admin's action filter lists these).
ACTIONS = (
    "notification.send", "notification.cancel", "delivery.redrive",
    "api_key.create", "api_key.update", "api_key.revoke",
    "template.create", "template.update", "template.delete",
    "template.version.create", "template.version.publish", "template.version.rollback",
    "preference.opt_out", "preference.opt_in", "preference.update",
    "segment.create", "segment.update", "segment.delete",
    "schedule.create", "schedule.update", "schedule.delete", "schedule.run",
    "retention.notifications", "retention.audit",
    "client.create", "client.update", "client.delete",
    "recipient.upsert", "recipient.create", "recipient.update", "recipient.delete",
    "device.register", "device.remove",
    "suppression.delete",
    "webhook.create", "webhook.delete", "webhook.rotate_secret", "webhook.test", "webhook.replay",
    "webhook.disable", "webhook.enable",
    "client.inbox_secret_rotate",
    "staff.login", "staff.logout", "staff.login_failed", "staff.otp_enrolled",
    "staff.password_change",
    "user.create", "user.update", "user.delete", "user.password_change",
    "group.create", "group.update", "group.delete",
    "otp_device.create", "otp_device.update", "otp_device.delete",
    "roles.sync",
    "recipient.export", "recipient.erase",
)


class ActorType(models.TextChoices):
    USER = "user"  # staff in the admin: actor_id = user pk, display = username
    API_KEY = "api_key"  # a client's API call: actor_id = key id, display = key prefix
    SYSTEM = "system"  # Celery tasks, beat, management commands: display = task or command
    INBOUND = "inbound"  # people and providers reaching public endpoints (STOP, unsubscribe)


class AuditLog(models.Model):
    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    actor_type = models.CharField(max_length=10, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_display = models.CharField(max_length=200, blank=True)
    # No database constraint: the row stays (with the id) when its client is deleted.
    client = models.ForeignKey(Client, null=True, blank=True, on_delete=models.DO_NOTHING,
                               db_constraint=False, db_index=False, related_name="+")
    action = models.CharField(max_length=64)  # dotted: notification.send, api_key.revoke …
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    recipient_external_id = models.CharField(max_length=200, blank=True)
    notification_id = models.UUIDField(null=True, blank=True)
    # Before/after for updates, the essentials for creates. Never secrets or message bodies.
    changes = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"
        indexes = [
            # Support's searches, each in a date range, newest first.
            models.Index(fields=["client", "created_at"], name="audit_client_created"),
            models.Index(fields=["recipient_external_id", "created_at"],
                         name="audit_recipient_created"),
            models.Index(fields=["notification_id"], name="audit_notification",
                         condition=Q(notification_id__isnull=False)),
            models.Index(fields=["actor_id", "created_at"], name="audit_actor_created"),
            # A request id pasted by support (the client's X-Request-Id, or ours from a log).
            models.Index(fields=["request_id", "created_at"], name="audit_request_created"),
            models.Index(fields=["action", "created_at"], name="audit_action_created"),
            # The history of one object (a template, a schedule, an API key …).
            models.Index(fields=["object_id", "created_at"], name="audit_object_created"),
            # Append-only: created_at follows the physical order, so a tiny BRIN index serves
            # date ranges and retention on any table size.
            BrinIndex(fields=["created_at"], name="audit_created_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_display or self.actor_type}"
