from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from apps.core.exceptions import ApplicationError

from .criteria import definition_errors
from .models import Segment
from .selectors import PREVIEW_SIZE, segment_count, segment_preview
from .services import segment_create, segment_delete, segment_update


class SegmentForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Segment
        fields = ["client", "name", "key", "definition"]

    def clean_definition(self) -> Any:
        definition = self.cleaned_data.get("definition")
        errors = definition_errors(definition)
        if errors:
            raise forms.ValidationError(
                [f"{path}: {message}" for path, messages in errors.items() for message in messages]
            )
        return definition


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = SegmentForm
    list_display = ["key", "name", "client", "updated_at"]
    list_filter = ["client"]
    list_select_related = ["client"]
    search_fields = ["key", "name"]
    show_full_result_count = False

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = ["client", "name", "key", "definition"]
        if obj is not None:
            fields += ["matching_recipients", "preview", "created_at", "updated_at"]
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        # A segment never changes owner: the schedules and sends that use it stay in one tenant.
        return ["client", "matching_recipients", "preview", "created_at", "updated_at"]

    def save_model(self, request: HttpRequest, obj: Segment, form: Any, change: bool) -> None:
        """Through the services, like the API (the form has already checked the definition)."""
        data = {"name": obj.name, "key": obj.key, "definition": obj.definition}
        if change:
            segment_update(segment=obj, **data)
            return
        created = segment_create(client=obj.client, **data)
        obj.pk, obj.created_at, obj.updated_at = created.pk, created.created_at, created.updated_at
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Segment) -> None:
        """Through the service (`segment.delete`); a segment a recurring send still targets
        is refused there (the admin's confirmation page lists those first)."""
        self._delete(request, [obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Segment]) -> None:
        self._delete(request, list(queryset))

    def _delete(self, request: HttpRequest, segments: list[Segment]) -> None:
        for segment in segments:
            try:
                segment_delete(segment=segment)
            except ApplicationError as exc:
                messages.error(request, exc.message)

    @admin.display(description="matching recipients now")
    def matching_recipients(self, obj: Segment) -> int:
        return segment_count(segment=obj)  # one COUNT query

    @admin.display(description=f"preview (first {PREVIEW_SIZE} by id)")
    def preview(self, obj: Segment) -> Any:
        recipients = segment_preview(segment=obj)
        if not recipients:
            return "Nobody matches."
        rows = format_html_join(
            "", '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (reverse("admin:recipients_recipient_change", args=[r.pk]), r.external_id,
                 r.email, r.phone, r.locale, r.attributes)
                for r in recipients
            ),
        )
        return format_html(
            "<table><thead><tr><th>id</th><th>email</th><th>phone</th><th>locale</th>"
            "<th>attributes</th></tr></thead><tbody>{}</tbody></table>", rows,
        )
