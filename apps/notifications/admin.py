from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from apps.audit.admin import AuditedAdminMixin
from apps.audit.selectors import notification_ids_for_request
from apps.core.admin_utils import HashedSearchMixin, ReadOnlyAdminMixin, ReadOnlyInline
from apps.core.logging import mask_email, mask_phone

from .models import Delivery, DeliveryEvent, Notification, Suppression
from .redrive import deliveries_redrive, failed_deliveries
from .selectors import deliveries_page, notification_counts

TIMELINE_DELIVERIES = 20
# Re-driving changes no record, only re-sends what failed: its own permission (created by
# apps/accounts/roles.py, given to Support and Administrator).
REDRIVE_PERMISSION = "notifications.redrive_delivery"


class RedriveMixin:
    def has_redrive_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(REDRIVE_PERMISSION))


@admin.register(Notification)
class NotificationAdmin(RedriveMixin, ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "client", "template_key", "status", "is_test", "priority", "category",
                    "recipient_count", "created_at"]
    list_filter = ["status", ("is_test", admin.BooleanFieldListFilter), "priority", "category",
                   "client"]
    list_select_related = ["client", "template_version__template"]
    search_fields = ["=id", "=idempotency_key"]
    search_help_text = ("Exact match: a notification id, an idempotency key, or the request id "
                        "of the send (the client's X-Request-Id, or the one we answered with).")
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = readonly_fields = ("id", "client", "status", "is_test", "template_version", "priority",
                                "category", "channels", "variables", "metadata", "scheduled_at",
                                "idempotency_key", "recipient_count", "created_at", "updated_at",
                                "completed_at", "deliveries_by_status", "timeline")

    actions = ["redrive"]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Notification],
                           search_term: str) -> tuple[QuerySet[Notification], bool]:
        """Also the notifications the request with this id sent, from its `notification.send`
        audit rows (one lookup in their request id index, then primary keys)."""
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        sent = notification_ids_for_request(search_term)
        if sent:
            found = found | queryset.filter(id__in=sent)
        return found, may_have_duplicates

    @admin.action(description="Re-drive the failed deliveries of the selected notifications",
                  permissions=["redrive"])
    def redrive(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        count = 0
        for notification_id in queryset.values_list("id", flat=True):
            count += deliveries_redrive(
                deliveries=failed_deliveries(notification_id=notification_id),
                actor=f"admin:{request.user}",
            )
        messages.success(request, f"Re-drove {count} failed deliveries.")

    @admin.display(description="template", ordering="template_version__template__key")
    def template_key(self, obj: Notification) -> str:
        version = obj.template_version
        return f"{version.template.key} v{version.version}"

    @admin.display(description="deliveries")
    def deliveries_by_status(self, obj: Notification) -> Any:
        """Counts per status (stored on the notification: no aggregate over its deliveries),
        each linking to those deliveries, and a link to all of them."""
        counts = notification_counts(notification=obj)
        url = reverse("admin:notifications_delivery_changelist")
        by_status = format_html_join(
            " · ", '<a href="{}?notification__id__exact={}&amp;status__exact={}">{}: {}</a>',
            ((url, obj.id, status, status, n) for status, n in sorted(counts.items())),
        )
        return format_html('{} · <a href="{}?notification__id__exact={}">all {}</a>',
                           by_status, url, obj.id, sum(counts.values()))

    @admin.display(description=f"timeline (first {TIMELINE_DELIVERIES} deliveries)")
    def timeline(self, obj: Notification) -> Any:
        """The timelines of its first deliveries (a notification may have 50,000: the rest are
        on the delivery list linked above, each delivery page has its own timeline)."""
        page = deliveries_page(notification=obj, limit=TIMELINE_DELIVERIES, with_events=True)
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (e.occurred_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], d.recipient.external_id,
                 d.channel, e.event, e.status,
                 " ".join(x for x in (e.provider, e.error_code, e.error_message) if x))
                for d in page.deliveries for e in d.events.all()
            ),
        )
        more = ""
        if page.next is not None:
            url = reverse("admin:notifications_delivery_changelist")
            more = format_html('<p><a href="{}?notification__id__exact={}">All deliveries</a></p>',
                               url, obj.id)
        return format_html(
            "<table><thead><tr><th>time (UTC)</th><th>recipient</th><th>channel</th>"
            "<th>event</th><th>status</th><th>provider / reason</th></tr></thead>"
            "<tbody>{}</tbody></table>{}", rows, more,
        )


class DeliveryEventInline(ReadOnlyInline):
    model = DeliveryEvent
    fields = readonly_fields = ("occurred_at", "event", "status", "provider",
                                "provider_message_id", "error_code", "error_message", "detail")
    show_change_link = False
    ordering = ["id"]


@admin.register(Delivery)
class DeliveryAdmin(RedriveMixin, ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "notification_link", "recipient", "channel", "status", "is_test",
                    "attempts", "provider", "error_code", "updated_at"]
    list_filter = ["status", ("is_test", admin.BooleanFieldListFilter), "channel", "provider",
                   "priority"]
    list_select_related = ["recipient", "notification"]
    search_fields = ["=id", "=provider_message_id", "=recipient__external_id", "=notification__id"]
    # One direction on (created_at, id): a notification's deliveries (?notification__id__exact=)
    # are read off the (notification, created_at, id) index, not sorted.
    ordering = ["created_at", "id"]
    show_full_result_count = False
    fields = readonly_fields = ("id", "notification", "client", "recipient", "channel",
                                "priority", "status", "is_test", "address", "attempts", "due_at",
                                "lease_until", "provider", "provider_message_id", "error_code",
                                "error_message", "created_at", "updated_at", "sent_at",
                                "delivered_at", "completed_at")
    inlines = [DeliveryEventInline]
    actions = ["redrive"]

    @admin.action(description="Re-drive the selected failed deliveries", permissions=["redrive"])
    def redrive(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = deliveries_redrive(
            deliveries=failed_deliveries(delivery_ids=list(queryset.values_list("id", flat=True))),
            actor=f"admin:{request.user}",
        )
        messages.success(request, f"Re-drove {count} failed deliveries (others were not failed).")

    @admin.display(description="notification")
    def notification_link(self, obj: Delivery) -> Any:
        url = reverse("admin:notifications_notification_change", args=[obj.notification_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.notification_id)[:8])


@admin.register(Suppression)
class SuppressionAdmin(HashedSearchMixin, AuditedAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Addresses NotifyHub will not send to. Deleting a row lifts the suppression
    (`suppression.delete`, with the address masked)."""

    list_display = ["address", "channel", "category", "client", "reason", "created_at"]
    list_filter = ["channel", "reason", "client"]
    list_select_related = ["client"]
    # The address is encrypted: searching an exact address matches its keyed hash.
    search_fields = ["=reason"]
    hashed_search_fields = ("address_hash",)
    sortable_by = ["channel", "client", "reason", "created_at"]
    readonly_fields = ["client", "channel", "address", "category", "reason", "detail",
                       "source_delivery", "confirmation_delivery", "created_at"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def audit_summary(self, obj: Suppression) -> dict[str, Any]:
        address = str(obj.address or "")
        masked = mask_email(address) if "@" in address else mask_phone(address)
        return {"channel": obj.channel, "category": obj.category, "reason": obj.reason,
                "address": masked,
                "created_at": obj.created_at}
