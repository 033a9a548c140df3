from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.audit.admin import AuditedAdminMixin

from .models import ApiKey, Client
from .services import api_key_create, api_key_revoke


@admin.register(Client)
class ClientAdmin(AuditedAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Tenants; Administrators only. Saves and deletes are recorded (`client.*`)."""

    list_display = ["name", "slug", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "client", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["client"]
    list_select_related = ["client"]
    search_fields = ["name", "prefix", "client__name"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is not None:  # a key never changes owner or name after creation
            return ["client", "name", *self.readonly_fields]
        return list(self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            return
        key, raw = api_key_create(client=obj.client, name=obj.name)
        obj.pk = key.pk
        obj.prefix, obj.key_hash, obj.created_at = key.prefix, key.key_hash, key.created_at
        messages.warning(
            request,
            f"The new API key is {raw} — copy it now: it is stored only as a hash and will "
            "not be shown again.",
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the key's history stays

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            api_key_revoke(api_key=key)
        messages.success(request, f"Revoked {queryset.count()} key(s).")
