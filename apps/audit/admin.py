"""The audit log in the admin, for support: search by recipient, notification, actor or action
in a date range, and follow a row to the notification's timeline. Read-only for everyone,
superusers included. Built for millions of rows: exact-match searches that each use an index,
no facet or DISTINCT queries, a capped count instead of COUNT(*) over the table.

`AuditedAdminMixin` records the saves and deletes of a ModelAdmin that writes models directly
instead of calling services (which record their own rows)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin import ShowFacets
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.paginator import Paginator
from django.db import connection, models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from apps.clients.models import Client
from apps.core.admin_utils import ReadOnlyAdminMixin
from apps.core.forms import CheckedJSONFormField

from .models import ACTIONS, AuditLog
from .selectors import audit_search_q
from .services import audit_record, audit_snapshot, changed_fields

COUNT_CAP = 10_000


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_CAP rows (narrow the search to see more); the unfiltered table
    is counted from the planner's estimate."""

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        queryset: Any = self.object_list
        if not queryset.query.where:
            with connection.cursor() as cursor:
                cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                               [AuditLog._meta.db_table])
                row = cursor.fetchone()
            if row and row[0] > COUNT_CAP:
                return int(row[0])
        return int(queryset[:COUNT_CAP].count())


class DateRangeFilter(admin.ListFilter):
    """`created_from` / `created_to` (dates, UTC, both inclusive), with shortcuts."""

    title = "date (UTC)"
    template = "admin/audit/date_range_filter.html"
    params = ("created_from", "created_to")
    shortcuts = (("Last 24 hours", 1), ("Last 7 days", 7), ("Last 30 days", 30))

    def __init__(self, request: HttpRequest, params: dict[str, Any], model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        for name in self.params:
            if name in params:
                value = params.pop(name)
                self.used_parameters[name] = value[-1] if isinstance(value, list) else value

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return list(self.params)

    def _date(self, name: str) -> dt.date | None:
        value = self.used_parameters.get(name)
        if not value:
            return None
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError as exc:
            raise IncorrectLookupParameters(exc) from exc

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        start, end = self._date("created_from"), self._date("created_to")
        if start is not None:
            queryset = queryset.filter(created_at__gte=dt.datetime.combine(start, dt.time.min, dt.UTC))
        if end is not None:
            next_day = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, dt.UTC)
            queryset = queryset.filter(created_at__lt=next_day)
        return queryset

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        chosen = {name: self.used_parameters.get(name, "") for name in self.params}
        yield {"selected": not any(chosen.values()), "display": "Any time",
               "query_string": changelist.get_query_string(remove=list(self.params))}
        today = timezone.now().date()
        for label, days in self.shortcuts:
            start = (today - dt.timedelta(days=days)).isoformat()
            yield {"selected": chosen == {"created_from": start, "created_to": ""},
                   "display": label,
                   "query_string": changelist.get_query_string({"created_from": start},
                                                              remove=["created_to"])}
        others = [(key, value) for key, values in changelist.filter_params.items()
                  if key not in self.params for value in values]
        yield {"form": True, "hidden": others, **chosen}


class ActionFilter(admin.SimpleListFilter):
    """The known actions, from a fixed list: no DISTINCT over the table."""

    title = "action"
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(action, action) for action in ACTIONS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(action=value) if value else queryset


def _notification_url(notification_id: Any) -> str:
    return reverse("admin:notifications_notification_change", args=[notification_id])


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["created_at", "action", "actor", "client", "object", "recipient_external_id",
                    "notification_link"]
    list_display_links = ["created_at"]
    list_filter = [DateRangeFilter, ActionFilter, "actor_type", "client"]
    list_select_related = ["client"]
    search_fields = ["recipient_external_id"]  # shows the box; the search is get_search_results
    search_help_text = ("Exact match: a recipient id, a notification id, an action "
                        "(notification.send), a username or API key prefix; or prefix it with "
                        "recipient:, notification:, actor:, action:, object:.")
    show_full_result_count = False
    show_facets = ShowFacets.NEVER
    paginator = CappedCountPaginator
    ordering = ("-created_at", "-id")
    actions = None
    fields = readonly_fields = ("created_at", "action", "actor_type", "actor_id", "actor_display",
                                "client", "object_type", "object_id", "recipient_external_id",
                                "notification_link", "changes_pretty", "ip", "user_agent",
                                "request_id", "related")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any],
                           search_term: str) -> tuple[QuerySet[Any], bool]:
        if not search_term.strip():
            return queryset, False
        return queryset.filter(audit_search_q(search_term)), False

    @admin.display(description="actor", ordering="actor_display")
    def actor(self, obj: AuditLog) -> str:
        return f"{obj.actor_type}: {obj.actor_display}" if obj.actor_display else obj.actor_type

    @admin.display(description="object")
    def object(self, obj: AuditLog) -> str:
        return f"{obj.object_type} {obj.object_id[:8]}" if obj.object_type else ""

    @admin.display(description="notification")
    def notification_link(self, obj: AuditLog) -> SafeString | str:
        if obj.notification_id is None:
            return ""
        return format_html('<a href="{}">{} (timeline)</a>', _notification_url(obj.notification_id),
                           str(obj.notification_id)[:8])

    @admin.display(description="changes")
    def changes_pretty(self, obj: AuditLog) -> SafeString:
        return format_html('<pre style="white-space:pre-wrap;margin:0">{}</pre>',
                           json.dumps(obj.changes, indent=2, ensure_ascii=False, sort_keys=True))

    @admin.display(description="see also")
    def related(self, obj: AuditLog) -> SafeString:
        """Support's next steps: the notification's timeline, the recipient's deliveries,
        everything else recorded about the same recipient or notification."""
        links: list[tuple[str, str]] = []
        own = reverse("admin:audit_auditlog_changelist")
        if obj.notification_id is not None:
            links.append((_notification_url(obj.notification_id), "notification timeline"))
            links.append((f"{own}?{urlencode({'q': f'notification:{obj.notification_id}'})}",
                          "audit rows of this notification"))
        if obj.recipient_external_id:
            deliveries = reverse("admin:notifications_delivery_changelist")
            links.append((f"{deliveries}?{urlencode({'q': obj.recipient_external_id})}",
                          "this recipient's deliveries"))
            links.append((f"{own}?{urlencode({'q': f'recipient:{obj.recipient_external_id}'})}",
                          "audit rows of this recipient"))
        if not links:
            return format_html("{}", "—")
        return format_html_join(" · ", '<a href="{}">{}</a>', links)


# -- recording admin changes that do not go through services ---------------------------------


def _client_of(obj: models.Model) -> Any:
    if isinstance(obj, Client):
        return obj.pk
    return getattr(obj, "client_id", None)


class AuditedAdminMixin:
    """Writes `<object_type>.create|update|delete` rows (actor: the admin user) for a
    ModelAdmin that saves or deletes models itself. The admin's views run in a transaction, so
    a row commits with its change. `audit_object_type` defaults to the model name.

    * `audit_private_fields`: fields whose values are personal data or secrets (an email, a
      phone number, a device key): their names are recorded (`changes.fields`), never values.
    * `audit_m2m_fields`: many-to-many fields recorded as before/after lists of the related
      objects' names (a user's groups); the row is then written after the form's relations
      are saved (`save_related`), so one save is one row.
    * `audit_summary(obj)`: what a delete row keeps (default: `{"name": str(obj)}`);
      `audit_recipient_id(obj)`: the recipient's external id, searchable, when there is one."""

    audit_object_type: str = ""
    audit_private_fields: frozenset[str] = frozenset()
    # JSON fields (a recipient's attributes …): what PostgreSQL cannot store is a form error.
    formfield_overrides: ClassVar[Mapping[type[models.Field[Any, Any]], Mapping[str, Any]]] = {
        models.JSONField: {"form_class": CheckedJSONFormField}}
    audit_m2m_fields: tuple[str, ...] = ()

    def _audit_type(self, obj: models.Model) -> str:
        return self.audit_object_type or obj._meta.model_name or "object"

    @staticmethod
    def _audit_fields(obj: models.Model, names: Sequence[str]) -> list[str]:
        concrete = {f.name for f in obj._meta.concrete_fields}
        return [name for name in names if name in concrete]

    def audit_summary(self, obj: Any) -> dict[str, Any]:
        return {"name": str(obj)}

    def audit_recipient_id(self, obj: Any) -> str:
        return ""

    def _audit_m2m(self, obj: models.Model) -> dict[str, list[str]]:
        if obj.pk is None:
            return {name: [] for name in self.audit_m2m_fields}
        return {name: sorted(str(o) for o in getattr(obj, name).all())
                for name in self.audit_m2m_fields}

    def _audit_private(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Moves private fields out of before/after into the list of changed field names."""
        if not changes:
            return {}
        private = {name for name in changes["after"] if name in self._private_attnames}
        if not private:
            return changes
        before = {k: v for k, v in changes["before"].items() if k not in private}
        after = {k: v for k, v in changes["after"].items() if k not in private}
        out: dict[str, Any] = {"fields": sorted(private)}
        if after:
            out.update(before=before, after=after)
        return out

    @cached_property
    def _private_attnames(self) -> set[str]:
        model: Any = getattr(self, "model", None)
        if model is None:
            return set(self.audit_private_fields)
        return {model._meta.get_field(name).attname for name in self.audit_private_fields}

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        fields = self._audit_fields(obj, list(getattr(form, "changed_data", []) or []))
        before = audit_snapshot(obj, fields) if change and obj.pk is not None else {}
        m2m_before = self._audit_m2m(obj) if change else {}
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        pending = (change, before, m2m_before)
        if self.audit_m2m_fields:
            obj._audit_pending = pending  # written in save_related, with the relations
            return
        self._audit_saved(obj, form, *pending)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)  # type: ignore[misc]
        pending = getattr(form.instance, "_audit_pending", None)
        if pending is not None:
            del form.instance._audit_pending
            self._audit_saved(form.instance, form, *pending)

    def _audit_saved(self, obj: Any, form: Any, change: bool, before: dict[str, Any],
                     m2m_before: dict[str, list[str]]) -> None:
        kind = self._audit_type(obj)
        m2m_after = self._audit_m2m(obj)
        if change:
            changes = self._audit_private(changed_fields(before, obj))
            m2m = {name: {"before": m2m_before.get(name, []), "after": after}
                   for name, after in m2m_after.items() if after != m2m_before.get(name, [])}
            if not changes and not m2m:
                return
            audit_record(action=f"{kind}.update", client=_client_of(obj), object_type=kind,
                         object_id=obj.pk, recipient_external_id=self.audit_recipient_id(obj),
                         changes={"name": str(obj), **changes, **m2m})
            return
        names = self._audit_fields(obj, list(form.fields))
        public = [name for name in names if name not in self.audit_private_fields]
        created: dict[str, Any] = audit_snapshot(obj, public, from_db=False)
        private = sorted(name for name in names if name in self.audit_private_fields
                         and getattr(obj, name) not in ("", None, {}, []))
        if private:
            created["fields"] = private
        created.update({name: values for name, values in m2m_after.items() if values})
        audit_record(action=f"{kind}.create", client=_client_of(obj), object_type=kind,
                     object_id=obj.pk, recipient_external_id=self.audit_recipient_id(obj),
                     changes=created)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self._audit_delete(obj)
        super().delete_model(request, obj)  # type: ignore[misc]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            self._audit_delete(obj)
        super().delete_queryset(request, queryset)  # type: ignore[misc]

    def _audit_delete(self, obj: models.Model) -> None:
        kind = self._audit_type(obj)
        audit_record(action=f"{kind}.delete", client=_client_of(obj), object_type=kind,
                     object_id=obj.pk, recipient_external_id=self.audit_recipient_id(obj),
                     changes=self.audit_summary(obj))
