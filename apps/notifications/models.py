from __future__ import annotations

import uuid

from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models import Q

from apps.clients.models import Client, key_mode
from apps.core.encrypted_fields import EncryptedCharField, PIIHashField, PIIManager
from apps.core.logging import mask_address
from apps.core.queues import Priority
from apps.recipients.models import Recipient
from apps.templates.models import TemplateVersion


class Channel(models.TextChoices):
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    PUSH = "push"
    IN_APP = "in_app"  # label "In App", as templates' CHANNEL_CHOICES: one OpenAPI enum


class DeliveryStatus(models.TextChoices):
    SCHEDULED = "scheduled"
    PENDING = "pending"
    QUEUED = "queued"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    BOUNCED = "bounced"
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"


# A worker may take a delivery in these statuses (once its due time has come).
CLAIMABLE = (DeliveryStatus.PENDING, DeliveryStatus.QUEUED, DeliveryStatus.RETRYING)
# No further change by our own doing; only a late provider receipt may still move `sent`.
TERMINAL = (
    DeliveryStatus.DELIVERED,
    DeliveryStatus.FAILED,
    DeliveryStatus.BOUNCED,
    DeliveryStatus.SUPPRESSED,
    DeliveryStatus.CANCELLED,
)
# Order used to keep provider receipts monotonic: a receipt never moves a delivery backwards.
STATUS_RANK = {
    DeliveryStatus.SCHEDULED: 0,
    DeliveryStatus.PENDING: 1,
    DeliveryStatus.QUEUED: 2,
    DeliveryStatus.RETRYING: 3,
    DeliveryStatus.SENDING: 4,
    DeliveryStatus.SENT: 5,
    DeliveryStatus.DELIVERED: 6,
    DeliveryStatus.BOUNCED: 7,
    DeliveryStatus.FAILED: 7,
    DeliveryStatus.SUPPRESSED: 7,
    DeliveryStatus.CANCELLED: 7,
}


class NotificationStatus(models.TextChoices):
    SCHEDULED = "scheduled"
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    PARTIALLY_FAILED = "partially_failed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Notification(models.Model):
    """One send request: a template version, variables, and recipients by channels."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed by the (client, created_at) index below.
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="notifications",
                               db_index=False)
    # NULL (not "") when absent, so the partial unique constraint ignores it.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_hash = models.CharField(max_length=64, blank=True)
    template_version = models.ForeignKey(
        TemplateVersion, on_delete=models.PROTECT, related_name="notifications"
    )
    variables = models.JSONField(default=dict, blank=True)
    channels = models.JSONField(default=list)
    priority = models.CharField(
        max_length=10, choices=Priority.choices(), default=Priority.NORMAL.value
    )
    category = models.CharField(max_length=50, default="transactional")
    metadata = models.JSONField(default=dict, blank=True)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    # Derived from the deliveries (services.notifications_refresh_status); stored for lists.
    status = models.CharField(
        max_length=20, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    recipient_count = models.PositiveIntegerField(default=0)
    # Deliveries per status ({"delivered": 998, "bounced": 2}), written with `status` by
    # notifications_refresh_status so reads never aggregate the deliveries. `counts_at` is when
    # they were last aggregated (null: never, readers aggregate themselves); `counts_stale` says
    # a later refresh of a large notification skipped the aggregate (see status.py).
    counts = models.JSONField(default=dict, blank=True, editable=False)
    counts_at = models.DateTimeField(null=True, blank=True, editable=False)
    counts_stale = models.BooleanField(default=False, editable=False)
    # Accepted with a test key: its deliveries go to the provider sandbox only (test-mode
    # providers), it is not charged to the daily quota, and only test keys see it.
    is_test = models.BooleanField("test", default=False, editable=False)
    # A large send's job while it is still being expanded into deliveries (fanout.py): the
    # status refresh never calls it final meanwhile; cleared when its last item is expanded,
    # on cancel and on delete.
    accept_job = models.ForeignKey("AcceptJob", null=True, blank=True, editable=False,
                                   on_delete=models.SET_NULL, related_name="+", db_index=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["client", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="notification_unique_idempotency_key",
            )
        ]
        indexes = [
            models.Index(fields=["client", "-created_at"], name="notification_client_created"),
            models.Index(fields=["client", "status", "-created_at"], name="notification_client_st"),
            # A test key's lists: test notifications are few, so a small partial index (live
            # lists use the two above and skip the few test rows).
            models.Index(fields=["client", "-created_at"], name="notification_client_test",
                         condition=Q(is_test=True)),
            # ?channel= on the list: one small partial index per channel, so a channel that
            # few of a client's notifications use is not a scan of all of them.
            *(models.Index(fields=["client", "-created_at"], name=f"notification_client_{c}",
                           condition=Q(channels__contains=[c]))
              for c in ("email", "sms", "whatsapp", "push", "in_app")),
            # Notifications of jobs still expanding (few, short-lived).
            models.Index(fields=["accept_job"], name="notification_accept_job",
                         condition=Q(accept_job__isnull=False)),
        ]

    def __str__(self) -> str:
        return str(self.id)


class Delivery(models.Model):
    """One recipient on one channel of a notification, and where it stands."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed by the (notification, created_at, id) index below, which also pages them.
    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    # client and recipient are indexed by the (client, status, …) and (recipient, created_at)
    # indexes below: every index is written on each of a delivery's ~3 status updates.
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="+", db_index=False)
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="deliveries",
                                  db_index=False)
    channel = models.CharField(max_length=20, choices=Channel.choices)
    priority = models.CharField(max_length=10, choices=Priority.choices())
    status = models.CharField(
        max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    # The template version this recipient gets (their locale's, pinned at accept time);
    # null means the notification's own version.
    template_version = models.ForeignKey(
        TemplateVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        db_index=False,  # partial index below: most deliveries use the notification's version
    )
    # Address snapshot at accept time (the recipient may change later); encrypted at rest.
    address = EncryptedCharField(max_length=320)
    attempts = models.PositiveSmallIntegerField(default=0)
    # SMS: message segments billed (GSM-7 160/153, UCS-2 70/67 characters).
    segments = models.PositiveSmallIntegerField(null=True, blank=True)
    # When the next attempt may start (scheduled send or retry backoff); null = now.
    due_at = models.DateTimeField(null=True, blank=True)
    # When the relay sweeper may hand this delivery out again (queue or worker lost it).
    lease_until = models.DateTimeField(null=True, blank=True)
    provider = models.CharField(max_length=50, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    error_code = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)
    # The notification's is_test, copied: dispatch picks the test-mode providers by it, and
    # test-mode receipts may only touch such rows.
    is_test = models.BooleanField("test", default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        verbose_name_plural = "deliveries"
        indexes = [
            # A notification's deliveries in accepted order (keyset pages of
            # GET /notifications/{id}/deliveries), and per status in that order (its status
            # filter, the status probes and per-status counts of status.py).
            models.Index(fields=["notification", "created_at", "id"], name="delivery_notif_order"),
            models.Index(fields=["notification", "status", "created_at", "id"],
                         name="delivery_notif_status_order"),
            # The relay sweeper's scan: only rows still in flight are indexed.
            models.Index(
                fields=["lease_until"],
                name="delivery_inflight_lease",
                condition=Q(status__in=["pending", "queued", "sending", "retrying", "scheduled"]),
            ),
            models.Index(
                fields=["provider", "provider_message_id"],
                name="delivery_provider_msg",
                condition=~Q(provider_message_id=""),
            ),
            models.Index(fields=["recipient", "-created_at"], name="delivery_recipient_created"),
            models.Index(fields=["client", "status", "-created_at"], name="delivery_client_status"),
            # Dashboard latency per minute (accept → sent) over recent sends.
            models.Index(fields=["sent_at"], name="delivery_sent_at",
                         condition=Q(sent_at__isnull=False)),
            # PROTECT on a template version's delete looks its deliveries up.
            models.Index(fields=["template_version"], name="delivery_own_version",
                         condition=Q(template_version__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.recipient_id} ({self.status})"

    @property
    def mode(self) -> str:
        """Which provider set sends it: "test" (the sandbox only) or "live"."""
        return key_mode(is_test=self.is_test)


class DeliveryEvent(models.Model):
    """Append-only history of a delivery: every status change and provider receipt."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: event_delivery_order (delivery, id) serves every lookup by delivery.
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="events",
                                 db_index=False)
    status = models.CharField(max_length=20, choices=DeliveryStatus.choices)
    # What happened, in provider-neutral words: accepted, claimed, sent, delivered, bounced,
    # retry_scheduled, failed, requeued, processed (provider receipt), …
    event = models.CharField(max_length=40)
    provider = models.CharField(max_length=50, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    # The provider's own id for a receipt (SendGrid sg_event_id …): a receipt seen twice is
    # stored once.
    provider_event_id = models.CharField(max_length=255, blank=True)
    error_code = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)
    detail = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Recorded order: provider timestamps are often whole seconds, so they may sort
        # before our own sub-second events of the same moment.
        ordering = ["id"]
        indexes = [
            models.Index(fields=["delivery", "id"], name="event_delivery_order"),
            # Append-only, so created_at follows the physical order: a tiny BRIN index serves
            # "events in the last hour" (dashboard, metrics) on any table size.
            BrinIndex(fields=["created_at"], name="event_created_brin"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_event_id"],
                condition=~Q(provider_event_id=""),
                name="event_unique_provider_event",
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.status}"


class Suppression(models.Model):
    """An address that must not be sent to on a channel (invalid number, Twilio 21610
    unsubscribed, hard bounce …). Checked at send time; ends the delivery `suppressed`."""

    id = models.BigAutoField(primary_key=True)
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="suppressions")
    channel = models.CharField(max_length=20, choices=Channel.choices)
    # Encrypted; matched by `address_hash`, which stays when the address is erased (GDPR), so
    # an erased address remains blocked.
    address = EncryptedCharField(max_length=320, blank=True)
    address_hash = PIIHashField(source="address", keep_when_cleared=True)
    # "" = the whole channel; else only notifications of this category (an email one-click
    # unsubscribe from "marketing" suppresses the address for "marketing" only).
    category = models.CharField(max_length=50, blank=True, default="")
    reason = models.CharField(max_length=100)
    detail = models.TextField(blank=True)
    source_delivery = models.ForeignKey(
        Delivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A consent opt-out (STOP): the one confirmation sent to the address despite this row
    # (apps/preferences/confirmation.py); dispatch lets exactly this delivery through.
    confirmation_delivery = models.ForeignKey(
        Delivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        db_index=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = PIIManager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Also the index of the dispatch-time check (client, channel, hash = ANY(…)).
            models.UniqueConstraint(
                fields=["client", "channel", "address_hash", "category"],
                name="suppression_unique_address_category",
            )
        ]
        indexes = [
            models.Index(fields=["confirmation_delivery"], name="suppression_confirmation",
                         condition=Q(confirmation_delivery__isnull=False)),
        ]

    def __str__(self) -> str:
        # Admin history and delete confirmations store this: never the full address.
        return f"{self.channel}:{mask_address(self.address)} ({self.reason})"


class AcceptJob(models.Model):
    """A large send accepted but not yet expanded into deliveries (apps/notifications/fanout.py).

    The request checks everything that can refuse it, writes the notifications, their audit
    rows and this job with its slices, and answers 202; workers then expand it one slice at a
    time. `cursor` is the next slice to expand: it moves in the same transaction as that slice's
    deliveries, so a slice is expanded exactly once. `lease_until` is the relay sweeper's net
    for a lost expand task, as deliveries have."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="+")
    priority = models.CharField(max_length=10, choices=Priority.choices())
    is_test = models.BooleanField(default=False)
    slices = models.PositiveIntegerField(default=0)
    cursor = models.PositiveIntegerField(default=0)
    deliveries_planned = models.PositiveIntegerField(default=0)
    deliveries_created = models.PositiveIntegerField(default=0)
    # Items skipped at expansion: notification cancelled or deleted, recipient erased or gone.
    items_skipped = models.PositiveIntegerField(default=0)
    # Who sent it ({"type", "id", "display", "request_id"}): the slices' audit rows
    # (`recipient.upsert`) are written in their name, not the worker's.
    actor = models.JSONField(default=dict, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The sweeper's scan: only jobs still expanding.
            models.Index(fields=["lease_until"], name="acceptjob_open_lease",
                         condition=Q(completed_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"accept job {self.id} ({self.cursor}/{self.slices})"


class AcceptJobSlice(models.Model):
    """One slice of a job's validated items. `payload` is the slice's items as JSON encrypted
    as one token (apps/core/crypto: inline recipients carry addresses); the row is deleted in
    the transaction that expands it, so nothing of it outlives the job."""

    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(AcceptJob, on_delete=models.CASCADE, related_name="+")
    seq = models.PositiveIntegerField()
    payload = models.TextField()
    # Notifications whose last item is in this slice (ids; no personal data).
    completes = models.JSONField(default=list)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "seq"], name="acceptjobslice_unique_seq"),
        ]

    def __str__(self) -> str:
        return f"slice {self.seq} of {self.job_id}"


class RelayMarker(models.Model):
    """The token of the marker key the relay sweeper keeps in the broker (apps/notifications/
    relay.py): while the broker holds the token PostgreSQL remembers, it kept its data; when
    the key is gone, the broker restarted empty (or was flushed) and every task it held is lost,
    so the sweeper re-publishes all pending, queued and retrying work at once."""

    name = models.CharField(primary_key=True, max_length=50)
    token = models.CharField(max_length=64)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.token}"
