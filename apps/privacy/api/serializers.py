from __future__ import annotations

from rest_framework import serializers

from apps.core.fields import StrictTypesMixin


class ErasureSerializer(StrictTypesMixin, serializers.Serializer):
    """What an erasure did. The erased id itself is not repeated."""

    recipient = serializers.CharField(
        source="tombstone",
        help_text="The tombstone id the recipient's history now carries (`erased-<hex>`).")
    erased_at = serializers.DateTimeField()
    counts = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Rows changed per kind: deliveries_cancelled, deliveries_scrubbed, "
                  "delivery_events_scrubbed, suppressions_scrubbed, notifications_scrubbed, "
                  "webhook_messages_scrubbed, devices_deleted, consent_records_deleted, "
                  "preference_profiles_deleted, idempotency_records_scrubbed, "
                  "audit_rows_rewritten, admin_log_entries_rewritten.")
