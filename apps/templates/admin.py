from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.core.admin_utils import ReadOnlyInline

from .models import Template, TemplateVersion
from .services import template_version_create


class TemplateVersionInline(ReadOnlyInline):
    model = TemplateVersion
    fields = readonly_fields = ("version", "locale", "subject", "required_variables", "created_at")
    ordering = ["-version"]


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["key", "name", "client", "channels", "category", "active_version"]
    list_filter = ["client", "category"]
    list_select_related = ["client", "active_version"]
    search_fields = ["key", "name"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [TemplateVersionInline]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "active_version":
            object_id = request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
            versions = TemplateVersion.objects.all()
            kwargs["queryset"] = (
                versions.filter(template_id=str(object_id)) if object_id else versions.none()
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(TemplateVersion)
class TemplateVersionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Versions are immutable: adding one appends (and publishes) it; nothing is edited."""

    list_display = ["template", "version", "locale", "subject", "created_at"]
    list_filter = ["template__client"]
    list_select_related = ["template"]
    search_fields = ["template__key", "subject"]
    fields = ("template", "locale", "subject", "text_body", "html_body", "sms_body",
              "whatsapp_body", "whatsapp_content_sid", "push_title", "push_body", "push_data",
              "version", "required_variables", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is not None:
            return [str(f) for f in self.fields]
        return ["version", "required_variables", "created_at"]

    def save_model(self, request: HttpRequest, obj: TemplateVersion, form: Any, change: bool) -> None:
        if change:
            return
        created = template_version_create(
            template=obj.template, subject=obj.subject, text_body=obj.text_body,
            html_body=obj.html_body, sms_body=obj.sms_body, whatsapp_body=obj.whatsapp_body,
            whatsapp_content_sid=obj.whatsapp_content_sid, push_title=obj.push_title,
            push_body=obj.push_body, push_data=obj.push_data, locale=obj.locale,
        )
        obj.pk, obj.version = created.pk, created.version

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
