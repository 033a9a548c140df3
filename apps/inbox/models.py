"""The in-app channel's rows (docs/inbox.md).

An `InboxMessage` IS the delivery of a notification on channel `in_app`: dispatch stores it
and marks the delivery `delivered` in the same transaction. `seq` numbers a recipient's
messages in commit order: it comes from the recipient's `InboxCounter` row, bumped with
`UPDATE … RETURNING` (an upsert) in the transaction that inserts the messages, so the row lock
orders concurrent writers. A message with a smaller `seq` is therefore always committed before
one with a larger `seq`, and a replay `seq > last_event_id` (live.messages_after) never misses
a message committed later."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from apps.clients.models import Client
from apps.notifications.models import Delivery
from apps.recipients.models import Recipient


class InboxCounter(models.Model):
    """The last `seq` given to one recipient's inbox messages (one row per recipient)."""

    recipient = models.OneToOneField(Recipient, on_delete=models.CASCADE, primary_key=True,
                                     related_name="+")
    last_seq = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.recipient_id}: {self.last_seq}"


class InboxMessage(models.Model):
    """One in-app message in one recipient's inbox (the delivery of channel `in_app`)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed by the (client, recipient …) indexes below is not needed: every read names the
    # recipient, and the recipient belongs to one client; `client` is checked alongside.
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="+", db_index=False)
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="+",
                                  db_index=False)
    delivery = models.OneToOneField(Delivery, on_delete=models.CASCADE,
                                    related_name="inbox_message")
    seq = models.BigIntegerField(help_text="Per recipient, increasing in commit order.")
    category = models.CharField(max_length=50, blank=True)
    title = models.CharField(max_length=500, blank=True)
    body = models.TextField(blank=True)
    action_url = models.CharField(max_length=2000, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    seen_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-seq"]
        constraints = [
            models.UniqueConstraint(fields=["recipient", "seq"], name="inbox_message_unique_seq"),
        ]
        indexes = [
            # The list (newest first, keyset on seq) and the replay (seq > N) of one inbox.
            models.Index(fields=["recipient", "-seq"], name="inbox_message_active",
                         condition=Q(archived_at__isnull=True)),
            # Counts and the unread / unseen lists: small partial indexes.
            models.Index(fields=["recipient", "-seq"], name="inbox_message_unread",
                         condition=Q(archived_at__isnull=True, read_at__isnull=True)),
            models.Index(fields=["recipient", "-seq"], name="inbox_message_unseen",
                         condition=Q(archived_at__isnull=True, seen_at__isnull=True)),
            # Retention deletes the oldest expired first, in batches.
            models.Index(fields=["expires_at"], name="inbox_message_expires"),
        ]

    def __str__(self) -> str:
        return f"{self.recipient_id} #{self.seq}"
