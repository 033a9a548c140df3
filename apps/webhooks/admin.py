"""Client webhooks in the admin: endpoints (the secret is shown once, when created here, and
never again), and the messages and attempts, read-only, with a replay action."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from apps.core.admin_utils import ReadOnlyAdminMixin, ReadOnlyInline

from .models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from .outbound.events import EVENT_TYPES
from .outbound.services import (
    webhook_endpoint_create,
    webhook_endpoint_disable,
    webhook_endpoint_enable,
    webhook_messages_replay_selected,
    webhook_url_problem,
)


class EnabledFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("enabled", "enabled"), ("disabled", "disabled"), ("deleted", "deleted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "enabled":
            return queryset.filter(disabled_at__isnull=True, deleted_at__isnull=True)
        if self.value() == "disabled":
            return queryset.filter(disabled_at__isnull=False, deleted_at__isnull=True)
        if self.value() == "deleted":
            return queryset.filter(deleted_at__isnull=False)
        return queryset


class WebhookEndpointForm(forms.ModelForm):  # type: ignore[type-arg]
    url = forms.URLField(max_length=2000, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=[(t, t) for t in EVENT_TYPES], required=False,
        widget=forms.CheckboxSelectMultiple, help_text="None ticked: every event type.")

    class Meta:
        model = WebhookEndpoint
        fields = ["client", "description", "event_types"]  # url: declared above

    def clean_url(self) -> str:
        url = str(self.cleaned_data["url"])
        problem = webhook_url_problem(url)
        if problem:
            raise forms.ValidationError(problem)
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = WebhookEndpointForm
    list_display = ["url", "client", "state", "events", "failing_since", "next_probe_at",
                    "disabled_reason", "created_at"]
    list_filter = [EnabledFilter, "client"]
    list_select_related = ["client"]
    search_fields = ["=id", "url", "client__name", "client__slug"]
    show_full_result_count = False
    readonly_fields = ["id", "client", "url", "description", "event_types", "failing_since",
                       "next_probe_at", "probe_failures",
                       "disabled_at", "disabled_reason", "deleted_at", "previous_secret_expires_at",
                       "created_at", "updated_at", "messages_link"]
    actions = ["enable", "disable"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["client", "url", "description", "event_types"]
        return list(self.readonly_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if obj is None else list(self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        if change:
            return
        endpoint = webhook_endpoint_create(
            client=obj.client, url=form.cleaned_data["url"], description=obj.description,
            event_types=form.cleaned_data.get("event_types") or [])
        obj.pk, obj.url, obj.created_at = endpoint.pk, endpoint.url, endpoint.created_at
        messages.warning(request, f"The signing secret is {endpoint.secret} — give it to the client "
                                  "now: it will not be shown again.")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the client deletes through the API; the admin disables

    def has_manage_permission(self, request: HttpRequest) -> bool:
        """Enable and disable: the endpoint's fields never change here, its state does."""
        return bool(request.user.has_perm("webhooks.change_webhookendpoint"))

    @admin.display(description="state")
    def state(self, obj: WebhookEndpoint) -> str:
        if obj.deleted_at:
            return "deleted"
        if obj.disabled_at:
            return "disabled"
        if obj.next_probe_at:
            return f"backed off: next probe {obj.next_probe_at:%Y-%m-%d %H:%M:%S} UTC"
        return "enabled"

    @admin.display(description="events")
    def events(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.event_types) or "all"

    @admin.display(description="messages")
    def messages_link(self, obj: WebhookEndpoint) -> Any:
        url = reverse("admin:webhooks_webhookmessage_changelist")
        return format_html('<a href="{}?endpoint__id__exact={}">messages</a> · '
                           '<a href="{}?endpoint__id__exact={}">attempts</a>',
                           url, obj.id, reverse("admin:webhooks_webhookattempt_changelist"), obj.id)

    @admin.action(description="Re-enable the selected endpoints", permissions=["manage"])
    def enable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        count = sum(webhook_endpoint_enable(endpoint_id=i) for i in queryset.values_list("id", flat=True))
        messages.success(request, f"Re-enabled {count} endpoint(s); replay what they missed.")

    @admin.action(description="Disable the selected endpoints", permissions=["manage"])
    def disable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        count = sum(webhook_endpoint_disable(endpoint_id=i, reason=f"Disabled by {request.user}.")
                    for i in queryset.values_list("id", flat=True))
        messages.success(request, f"Disabled {count} endpoint(s).")


class WebhookAttemptInline(ReadOnlyInline):
    model = WebhookAttempt
    fields = readonly_fields = ("created_at", "attempt", "status_code", "duration_ms", "error_code",
                                "error", "response_body")
    show_change_link = False
    ordering = ["id"]


@admin.register(WebhookMessage)
class WebhookMessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "event_type", "status", "endpoint", "client", "attempts",
                    "next_attempt_at", "last_status_code", "created_at"]
    list_filter = ["status", "event_type", "endpoint__client"]
    list_select_related = ["endpoint__client"]
    search_fields = ["=id", "=delivery_id", "=notification_id", "=endpoint__id"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = readonly_fields = ("id", "endpoint", "event_type", "status", "attempts",
                                "next_attempt_at", "lease_until", "last_status_code", "last_error",
                                "delivery_id", "notification_id", "request_id", "dedupe_key",
                                "payload", "created_at", "updated_at", "succeeded_at")
    inlines = [WebhookAttemptInline]
    actions = ["replay"]

    @admin.display(description="client", ordering="endpoint__client__name")
    def client(self, obj: WebhookMessage) -> str:
        return obj.endpoint.client.name

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("webhooks.change_webhookmessage"))

    @admin.action(description="Replay the selected messages (fresh retry schedule)",
                  permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookMessage]) -> None:
        count = webhook_messages_replay_selected(message_ids=list(queryset.values_list("id", flat=True)))
        messages.success(request, f"Replaying {count} message(s) (those of disabled endpoints and "
                                  "those in flight are skipped).")


@admin.register(WebhookAttempt)
class WebhookAttemptAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["created_at", "event_type", "endpoint", "client", "attempt", "succeeded",
                    "status_code", "duration_ms", "error_code"]
    list_filter = ["succeeded", "error_code", "endpoint__client"]
    list_select_related = ["endpoint__client", "message"]
    search_fields = ["=message__id", "=endpoint__id"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = readonly_fields = ("message", "endpoint", "attempt", "succeeded", "status_code",
                                "duration_ms", "error_code", "error", "response_body", "created_at")

    @admin.display(description="event", ordering="message__event_type")
    def event_type(self, obj: WebhookAttempt) -> str:
        return obj.message.event_type

    @admin.display(description="client", ordering="endpoint__client__name")
    def client(self, obj: WebhookAttempt) -> str:
        return obj.endpoint.client.name
