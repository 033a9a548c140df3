from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.audit.admin import AuditedAdminMixin

from .models import ApiKey, Client, Scope, all_scopes
from .services import api_key_create, api_key_revoke, api_key_scopes_set


@admin.register(Client)
class ClientAdmin(AuditedAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Tenants; Administrators only. Saves and deletes are recorded (`client.*`)."""

    list_display = ["name", "slug", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["id", "inbox_signing_secret_status"]
    audit_private_fields = frozenset({"inbox_signing_secret"})
    actions = ["rotate_inbox_signing_secret"]

    @admin.display(description="inbox signing secret")
    def inbox_signing_secret_status(self, obj: Client) -> str:
        return ("set (shown once when rotated; action “Rotate the inbox signing secret”)"
                if obj.inbox_signing_secret else "not set yet")

    @admin.action(description="Rotate the inbox signing secret (shown once)",
                  permissions=["change"])
    def rotate_inbox_signing_secret(self, request: HttpRequest, queryset: QuerySet[Client]) -> None:
        """A new secret for minting inbox tokens offline (docs/inbox.md); tokens signed with
        the old one stop working at once."""
        from apps.inbox.tokens import inbox_signing_secret_rotate

        for client in queryset:
            secret = inbox_signing_secret_rotate(client=client)
            messages.warning(request, f"The new inbox signing secret of {client.name} (client id "
                                      f"{client.pk}) is {secret} — copy it now: it will not be "
                                      "shown again.")

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "provider_order" and field is not None:
            # The choices come from the provider registry, never from a list kept here.
            from apps.notifications.providers.registry import provider_choices

            field.help_text = f"{db_field.help_text} Providers: {provider_choices()}."
        return field


class ApiKeyForm(forms.ModelForm):  # type: ignore[type-arg]
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, initial=all_scopes,
        help_text="What the key may do; docs/api.md lists the endpoints of each scope.",
    )

    class Meta:
        model = ApiKey
        fields = ["client", "name", "mode", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = ApiKeyForm
    list_display = ["name", "client", "prefix", "mode", "scope_list", "created_at",
                    "last_used_at", "revoked_at"]
    list_filter = ["mode", "client"]
    list_select_related = ["client"]
    search_fields = ["name", "prefix", "client__name"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is not None:  # a key never changes owner, name or mode; its scopes may change
            return ["client", "name", "mode", *self.readonly_fields]
        return list(self.readonly_fields)

    @admin.display(description="scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes) or "(none)"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        scopes = list(form.cleaned_data.get("scopes") or [])
        if change:
            api_key_scopes_set(api_key=obj, scopes=scopes)
            return
        key, raw = api_key_create(client=obj.client, name=obj.name, scopes=scopes, mode=obj.mode)
        obj.pk = key.pk
        obj.prefix, obj.key_hash, obj.created_at = key.prefix, key.key_hash, key.created_at
        obj.scopes, obj.mode = key.scopes, key.mode
        note = " It is a test key: its sends go to the provider sandbox only." if key.is_test else ""
        messages.warning(
            request,
            f"The new API key is {raw} — copy it now: it is stored only as a hash and will "
            f"not be shown again.{note}",
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the key's history stays

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            api_key_revoke(api_key=key)
        messages.success(request, f"Revoked {queryset.count()} key(s).")
