from __future__ import annotations

from django.contrib import admin

from apps.audit.admin import AuditedAdminMixin
from apps.core.admin_utils import HashedSearchMixin, ReadOnlyInline
from apps.privacy.admin import gdpr_erase, gdpr_export

from .models import Device, Recipient


class DeviceInline(ReadOnlyInline):
    model = Device
    fields = readonly_fields = ("platform", "token", "is_active", "deactivated_at",
                                "deactivation_reason", "created_at")
    show_change_link = False


@admin.register(Recipient)
class RecipientAdmin(HashedSearchMixin, AuditedAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Saves and deletes are recorded (`recipient.create|update|delete`) with the names of
    the contact fields that changed, never their values."""

    audit_private_fields = frozenset({"email", "phone", "whatsapp", "attributes"})
    list_display = ["external_id", "client", "email", "phone", "locale", "timezone", "updated_at"]
    list_filter = ["client", "locale"]
    list_select_related = ["client"]
    # Addresses are encrypted: an exact address is found through its keyed hash.
    search_fields = ["=external_id"]
    hashed_search_fields = ("email_hash", "phone_hash", "whatsapp_hash")
    sortable_by = ["external_id", "client", "locale", "timezone", "updated_at"]
    readonly_fields = ["created_at", "updated_at"]
    show_full_result_count = False
    inlines = [DeviceInline]
    actions = [gdpr_export, gdpr_erase]

    def audit_recipient_id(self, obj: Recipient) -> str:
        return obj.external_id
