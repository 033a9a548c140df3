from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from apps.core.exceptions import ApplicationError

from .models import RecurringSend
from .selectors import recurring_send_next_run
from .services import (
    EDITABLE,
    recurring_send_check,
    recurring_send_create,
    recurring_send_delete,
    recurring_send_run,
    recurring_send_update,
)


class RecurringSendForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = RecurringSend
        fields = ["client", *EDITABLE]

    def clean(self) -> dict[str, Any]:
        """The services' own checks (crontab, time zone, target, template, variables), shown
        on the fields they concern."""
        data = super().clean() or {}
        for name, empty in (("variables", {}), ("channels", []), ("recipient_ids", [])):
            if data.get(name) in (None, ""):
                data[name] = empty
        client = data.get("client") or getattr(self.instance, "client", None)
        if client is None or self.errors:
            return data
        values = {name: data.get(name) for name in EDITABLE}
        try:
            recurring_send_check(values, client=client)
        except ApplicationError as exc:
            for path, problems in (exc.fields or {"": [exc.message]}).items():
                name = path.split(".")[0].split("[")[0]
                name = "template" if name == "template_id" else name
                self.add_error(name if name in self.fields else None, problems)
        return data


@admin.register(RecurringSend)
class RecurringSendAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Create, change and delete go through the services, so the beat PeriodicTask and its
    CrontabSchedule always match what is shown here."""

    form = RecurringSendForm
    list_display = ["name", "client", "target", "crontab", "timezone", "enabled", "is_test",
                    "next_run", "last_run_at", "has_error"]
    list_filter = ["enabled", ("is_test", admin.BooleanFieldListFilter), "client"]
    list_select_related = ["client", "segment", "template"]
    search_fields = ["name", "=id"]
    raw_id_fields = ["template", "segment"]
    actions = ["run_now"]
    fieldsets = [
        (None, {"fields": ["client", "name", "enabled", "is_test"]}),
        ("What", {"fields": ["template", "variables", "channels", "priority", "category",
                             "local_send_time"]}),
        ("To whom (one of)", {"fields": ["recipient_ids", "segment"]}),
        ("When (crontab in the time zone)", {
            "fields": ["minute", "hour", "day_of_week", "day_of_month", "month_of_year",
                       "timezone", "next_run"]}),
        ("Runs", {"fields": ["last_run_at", "last_scheduled_for", "last_notification_ids",
                             "last_error", "beat_task", "created_at", "updated_at"]}),
    ]
    readonly_fields = ["is_test", "next_run", "last_run_at", "last_scheduled_for",
                       "last_notification_ids", "last_error", "beat_task", "created_at",
                       "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is not None:  # a schedule stays with its client (template and segment are theirs)
            return ["client", *self.readonly_fields]
        return list(self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: RecurringSend, form: Any, change: bool) -> None:
        values = {name: form.cleaned_data.get(name, getattr(obj, name)) for name in EDITABLE}
        if change:
            recurring_send_update(recurring_send=obj, **values)
            return
        created = recurring_send_create(client=obj.client, **values)
        obj.pk, obj._state.adding = created.pk, False
        obj.periodic_task_id, obj.created_at = created.periodic_task_id, created.created_at

    def delete_model(self, request: HttpRequest, obj: RecurringSend) -> None:
        recurring_send_delete(recurring_send=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RecurringSend]) -> None:
        for recurring_send in queryset.select_related("periodic_task"):
            recurring_send_delete(recurring_send=recurring_send)

    @admin.action(description="Run the selected recurring sends now", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[RecurringSend]) -> None:
        for recurring_send in queryset:
            result = recurring_send_run(recurring_send=recurring_send,
                                        manual_key=f"admin:{uuid.uuid4().hex}")
            if result.status == "failed":
                messages.error(request, f"{recurring_send}: {result.error}")
            else:
                messages.success(request, f"{recurring_send}: {len(result.notifications)} "
                                          f"notification(s) to {result.recipients} recipient(s).")

    @admin.display(description="to")
    def target(self, obj: RecurringSend) -> str:
        if obj.segment_id:
            return f"segment {obj.segment}"
        return f"{len(obj.recipient_ids)} recipient(s)"

    @admin.display(description="crontab (m h dom mon dow)")
    def crontab(self, obj: RecurringSend) -> str:
        return obj.crontab_expression

    @admin.display(description="next run")
    def next_run(self, obj: RecurringSend) -> str:
        if obj.pk is None:
            return "-"
        when = recurring_send_next_run(obj)
        if when is None:
            return "paused" if not obj.enabled else "never"
        in_zone = when.astimezone(zoneinfo.ZoneInfo(obj.timezone))
        utc = when.astimezone(dt.UTC)
        return f"{in_zone:%Y-%m-%d %H:%M} {obj.timezone} ({utc:%Y-%m-%d %H:%M} UTC)"

    @admin.display(description="error", boolean=True)
    def has_error(self, obj: RecurringSend) -> bool:
        return bool(obj.last_error)

    @admin.display(description="beat task")
    def beat_task(self, obj: RecurringSend) -> Any:
        if obj.periodic_task_id is None:
            return "-"
        url = reverse("admin:django_celery_beat_periodictask_change", args=[obj.periodic_task_id])
        return format_html('<a href="{}">{}</a>', url, f"recurring-send:{obj.pk}")
