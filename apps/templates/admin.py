"""Templates in the admin, for product teams.

* A template's page edits its settings and, below them, its content for one locale. Changed
  content is saved as a NEW draft version; nothing is edited in place.
* A version's page shows every channel rendered side by side with sample variables (HTML email
  in a sandboxed iframe), the diff against the live version of its locale, the notifications
  that used it, and Publish / Roll back buttons (also admin actions on the version list).
* Lists annotate what they show (status, counts): no query per row.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from apps.core.exceptions import ApplicationError
from apps.core.forms import CheckedJSONFormField

from .compare import CONTENT_PARTS, content_diff, sample_variables_for
from .locales import is_valid_locale, locale_key, normalize_locale
from .models import Template, TemplateActiveVersion, TemplateVersion
from .rendering import (
    CHANNELS,
    RenderError,
    is_safe_action_url,
    preview_channel,
    preview_channels,
    preview_context,
    required_variables,
    source_parts,
)
from .selectors import (
    active_pointer,
    default_locale_version,
    latest_version,
    template_publications,
    template_versions,
    with_notification_count,
    with_version_status,
)
from .services import (
    VersionContent,
    template_create,
    template_rollback,
    template_update,
    template_version_create,
    template_version_publish,
)

VERSIONS_SHOWN = 50


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user}"


def _version_url(version_id: Any) -> str:
    return reverse("admin:templates_templateversion_change", args=[version_id])


def _status(version: TemplateVersion) -> str:
    if getattr(version, "is_active", False):
        return "active"
    return "inactive" if getattr(version, "first_published_at", None) else "draft"


# --- content forms ---------------------------------------------------------------------------

class ContentField(forms.CharField):
    """Template source: whitespace kept, browser line endings (CRLF) made LF, so an unchanged
    textarea compares equal to the stored version."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, strip=False, **kwargs)

    def to_python(self, value: Any) -> str:
        return str(super().to_python(value)).replace("\r\n", "\n").replace("\r", "\n")


def _area(rows: int) -> forms.Textarea:
    return forms.Textarea(attrs={"rows": rows, "cols": 100, "style": "font-family: monospace"})


class ContentFormMixin(forms.Form):
    subject = ContentField(max_length=998, widget=forms.TextInput(attrs={"size": 100}))
    text_body = ContentField(widget=_area(6), label="Email text")
    html_body = ContentField(widget=_area(12), label="Email HTML")
    sms_body = ContentField(widget=_area(3), label="SMS")
    whatsapp_body = ContentField(widget=_area(3), label="WhatsApp")
    whatsapp_content_sid = forms.RegexField(r"^HX[0-9a-fA-F]{32}$", required=False, max_length=64,
                                            label="WhatsApp content SID")
    push_title = ContentField(max_length=200)
    push_body = ContentField(widget=_area(3))
    push_data = CheckedJSONFormField(required=False, initial=dict,
                                help_text='A JSON object of strings, e.g. {"url": "/orders/{{ id }}"}.')

    in_app_title = ContentField(max_length=500, label="In-app title")
    in_app_body = ContentField(widget=_area(3), label="In-app body")
    in_app_action_url = ContentField(max_length=2000, label="In-app action URL",
                                     widget=forms.TextInput(attrs={"size": 100}),
                                     help_text="http(s) URL or /path; may use variables.")
    in_app_data = CheckedJSONFormField(required=False, initial=dict, label="In-app data",
                                       help_text='A JSON object; string values are templates, '
                                                 'e.g. {"order": "{{ orderId }}"}.')

    def clean_in_app_data(self) -> dict[str, Any]:
        value = self.cleaned_data.get("in_app_data") or {}
        if not isinstance(value, dict):
            raise ValidationError("Must be a JSON object.")
        return value

    def clean_push_data(self) -> dict[str, str]:
        value = self.cleaned_data.get("push_data") or {}
        if not isinstance(value, dict):
            raise ValidationError("Must be a JSON object.")
        return {str(k): str(v) for k, v in value.items()}

    def content(self) -> VersionContent:
        data = self.cleaned_data
        return VersionContent(
            subject=data.get("subject") or "", text_body=data.get("text_body") or "",
            html_body=data.get("html_body") or "", sms_body=data.get("sms_body") or "",
            whatsapp_body=data.get("whatsapp_body") or "",
            whatsapp_content_sid=data.get("whatsapp_content_sid") or "",
            push_title=data.get("push_title") or "", push_body=data.get("push_body") or "",
            push_data=data.get("push_data") or {},
            in_app_title=data.get("in_app_title") or "", in_app_body=data.get("in_app_body") or "",
            in_app_action_url=data.get("in_app_action_url") or "",
            in_app_data=data.get("in_app_data") or {},
        )

    def check_content(self, content: VersionContent) -> None:
        """Syntax errors on the field they are in; an empty version is refused."""
        if not any(content.values()):
            self.add_error(None, "Give content for at least one channel.")
            return
        try:
            required_variables(source_parts(
                subject=content["subject"], text_body=content["text_body"],
                html_body=content["html_body"], sms_body=content["sms_body"],
                whatsapp_body=content["whatsapp_body"], push_title=content["push_title"],
                push_body=content["push_body"], push_data=content["push_data"],
                in_app_title=content["in_app_title"], in_app_body=content["in_app_body"],
                in_app_action_url=content["in_app_action_url"],
                in_app_data=content["in_app_data"],
            ))
            if content["in_app_action_url"] and not is_safe_action_url(
                    content["in_app_action_url"], template=True):
                self.add_error("in_app_action_url", "An http(s) URL or a path starting with /.")
        except RenderError as exc:
            field = exc.part.split(".")[0] if exc.part else None
            self.add_error(field if field in self.fields else None, str(exc))


def _content_of(version: TemplateVersion | None) -> VersionContent:
    if version is None:
        return VersionContent(subject="", text_body="", html_body="", sms_body="", whatsapp_body="",
                              whatsapp_content_sid="", push_title="", push_body="", push_data={},
                              in_app_title="", in_app_body="", in_app_action_url="",
                              in_app_data={})
    return VersionContent(**{part: getattr(version, part) for part in CONTENT_PARTS})  # type: ignore[typeddict-item]


def _clean_locale(value: str) -> str:
    if not is_valid_locale(value):
        raise ValidationError("Use a language tag such as en, fr or fr-CA.")
    return normalize_locale(value)


# --- templates -------------------------------------------------------------------------------

class TemplateAdminForm(ContentFormMixin, forms.ModelForm):  # type: ignore[type-arg]
    channels = forms.MultipleChoiceField(choices=[(c, c) for c in CHANNELS],
                                         widget=forms.CheckboxSelectMultiple)
    content_locale = forms.CharField(
        max_length=15, required=False, label="Locale",
        help_text="The locale of the content below (default: the template's default locale).",
    )
    # Set per request by TemplateAdmin.get_form: the version the content fields start from.
    content_base: TemplateVersion | None = None
    content_base_locale: str = ""

    class Meta:
        model = Template
        fields = ["client", "key", "name", "channels", "category", "default_locale",
                  "sample_variables"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.update(_content_of(self.content_base))
            self.initial["content_locale"] = self.content_base_locale

    def clean_default_locale(self) -> str:
        value = _clean_locale(self.cleaned_data.get("default_locale") or "")
        template = self.instance
        if template.pk and locale_key(value) != locale_key(template.default_locale):
            allowed, _version = default_locale_version(template=template, locale=value)
            if not allowed:
                raise ValidationError("Publish a version in this locale first.")
        return value

    def clean_content_locale(self) -> str:
        value = self.cleaned_data.get("content_locale") or ""
        return _clean_locale(value) if value else ""

    def clean_sample_variables(self) -> dict[str, Any]:
        value = self.cleaned_data.get("sample_variables") or {}
        if not isinstance(value, dict):
            raise ValidationError("Must be a JSON object.")
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        self.new_content: VersionContent | None = None
        if self.errors:
            return cleaned
        locale = (cleaned.get("content_locale") or cleaned.get("default_locale")
                  or self.instance.default_locale)
        cleaned["content_locale"] = locale
        content = self.content()
        base = (latest_version(template=self.instance, locale=locale)
                if self.instance.pk else None)
        if content != _content_of(base) and (base is not None or any(content.values())):
            self.check_content(content)
            self.new_content = content
        return cleaned


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    # sample_variables: a NUL or a lone surrogate is a form error, not a 500.
    formfield_overrides = {models.JSONField: {"form_class": CheckedJSONFormField}}
    form = TemplateAdminForm
    list_display = ["key", "name", "client", "channels", "category", "default_locale",
                    "live_versions"]
    list_filter = ["client", "category"]
    list_select_related = ["client"]
    search_fields = ["key", "name"]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Template]:
        pointers = TemplateActiveVersion.objects.select_related("version").order_by("locale")
        return super().get_queryset(request).prefetch_related(
            Prefetch("active_versions", queryset=pointers)
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = ["live_versions_table", "versions_table", "publication_history", "created_at",
                  "updated_at"]
        return ["client", "key", *fields] if obj is not None else fields

    def _content_base(self, request: HttpRequest, obj: Template | None) -> tuple[str, TemplateVersion | None]:
        cached = getattr(request, "_template_content_base", None)
        if cached is None:
            wanted = request.GET.get("locale", "")
            locale = normalize_locale(wanted) if is_valid_locale(wanted) else (
                obj.default_locale if obj is not None else "en")
            base = latest_version(template=obj, locale=locale) if obj is not None else None
            cached = (locale, base)
            request._template_content_base = cached  # type: ignore[attr-defined]
        return cached

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        locale, base = self._content_base(request, obj)
        return type(form.__name__, (form,), {"content_base": base, "content_base_locale": locale})

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        settings = (None, {"fields": ["client", "key", "name", "channels", "category",
                                      "default_locale", "sample_variables"]})
        content = ("Content", {"fields": ["content_locale", *CONTENT_PARTS],
                               "description": self._content_description(request, obj)})
        if obj is None:
            return [settings, content]
        return [settings, ("Live", {"fields": ["live_versions_table"]}), content,
                ("History", {"fields": ["versions_table", "publication_history", "created_at",
                                        "updated_at"]})]

    def _content_description(self, request: HttpRequest, obj: Template | None) -> SafeString:
        if obj is None:
            return mark_safe(
                "The first version is saved as a <b>draft</b>: publish it from its page to make "
                "the template sendable."
            )
        locale, base = self._content_base(request, obj)
        locales = sorted(set(TemplateVersion.objects.filter(template=obj)
                             .values_list("locale", flat=True)) | {obj.default_locale})
        links = format_html_join(" · ", '<a href="?locale={}">{}</a>', ((lc, lc) for lc in locales))
        start = (format_html('from <a href="{}">{} v{}</a> ({})', _version_url(base.pk), base.locale,
                             base.version, self._status_of(base)) if base else "empty")
        return format_html(
            "Editing <b>{}</b> content, starting {}. Saving changed content creates a <b>new "
            "draft version</b>; versions are never edited. Publish it from the version's page. "
            "Locales: {} (or type another locale below).", locale, start, links,
        )

    @staticmethod
    def _status_of(version: TemplateVersion) -> str:
        annotated = with_version_status(TemplateVersion.objects.filter(pk=version.pk)).first()
        return _status(annotated) if annotated else ""

    def save_model(self, request: HttpRequest, obj: Template, form: Any, change: bool) -> None:
        data, content = form.cleaned_data, form.new_content
        if not change:
            created = template_create(
                client=data["client"], key=data["key"], name=data["name"], channels=data["channels"],
                category=data["category"], default_locale=data["default_locale"],
                sample_variables=data.get("sample_variables") or {}, content=content,
                publish=False, actor=_actor(request),
            )
            obj.pk, obj.created_at, obj.updated_at = created.pk, created.created_at, created.updated_at
            obj._state.adding = False
            if content is not None:
                draft = latest_version(template=created, locale=created.default_locale)
                self._draft_message(request, draft)
            return
        template_update(template=obj, name=data["name"], channels=data["channels"],
                        category=data["category"], default_locale=data["default_locale"],
                        sample_variables=data.get("sample_variables") or {})
        if content is not None:
            draft = template_version_create(template=obj, locale=data["content_locale"],
                                            publish=False, actor=_actor(request), **content)
            self._draft_message(request, draft)

    def _draft_message(self, request: HttpRequest, draft: TemplateVersion | None) -> None:
        if draft is not None:
            messages.info(request, format_html(
                'Content saved as draft <a href="{}">{} v{}</a>. Review its preview and publish it.',
                _version_url(draft.pk), draft.locale, draft.version,
            ))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting is refused once notifications used a version (the API's DELETE says 409).
        return False

    @admin.display(description="live")
    def live_versions(self, obj: Template) -> str:
        return " · ".join(f"{p.locale} v{p.version.version}" for p in obj.active_versions.all()) or "—"

    @admin.display(description="live versions")
    def live_versions_table(self, obj: Template) -> SafeString:
        rows = format_html_join(
            "", '<tr><td>{}</td><td><a href="{}">v{}</a></td><td>{}</td><td>{}</td></tr>',
            ((p.locale + (" (default)" if locale_key(p.locale) == locale_key(obj.default_locale) else ""),
              _version_url(p.version_id), p.version.version,
              p.published_at.strftime("%Y-%m-%d %H:%M"), p.published_by)
             for p in obj.active_versions.all()),
        )
        if not rows:
            return mark_safe("Nothing published yet.")
        return format_html("<table><tr><th>locale</th><th>version</th><th>published (UTC)</th>"
                           "<th>by</th></tr>{}</table>", rows)

    @admin.display(description=f"versions (newest {VERSIONS_SHOWN})")
    def versions_table(self, obj: Template) -> SafeString:
        versions = template_versions(template=obj).order_by("-created_at", "-id")[:VERSIONS_SHOWN]
        rows = format_html_join(
            "", '<tr><td><a href="{}">{} v{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            ((_version_url(v.pk), v.locale, v.version, _status(v), v.subject[:80],
              ", ".join(v.required_variables), v.created_at.strftime("%Y-%m-%d %H:%M"))
             for v in versions),
        )
        all_url = reverse("admin:templates_templateversion_changelist")
        return format_html(
            '<table><tr><th>version</th><th>status</th><th>subject</th><th>variables</th>'
            '<th>created (UTC)</th></tr>{}</table><p><a href="{}?template__id__exact={}">All versions'
            '</a></p>', rows, all_url, obj.pk,
        )

    @admin.display(description="publishing history (latest 20)")
    def publication_history(self, obj: Template) -> SafeString:
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((p.created_at.strftime("%Y-%m-%d %H:%M"), p.action, p.locale, f"v{p.version.version}",
              f"v{p.previous_version.version}" if p.previous_version else "—", p.actor)
             for p in template_publications(template=obj)),
        )
        return format_html("<table><tr><th>when (UTC)</th><th>action</th><th>locale</th>"
                           "<th>version</th><th>replaced</th><th>by</th></tr>{}</table>", rows)


# --- versions --------------------------------------------------------------------------------

class VersionAddForm(ContentFormMixin, forms.ModelForm):  # type: ignore[type-arg]
    then = forms.ChoiceField(
        choices=[("draft", "Save as a draft"), ("publish", "Publish now")], required=False,
        initial="draft", widget=forms.RadioSelect, label="After saving",
    )

    class Meta:
        model = TemplateVersion
        fields = ["template", "locale"]

    def clean_locale(self) -> str:
        return _clean_locale(self.cleaned_data.get("locale") or "")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.errors:
            self.check_content(self.content())
        return cleaned


class VersionStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "active"), ("draft", "draft"), ("inactive", "inactive")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "active":
            return queryset.filter(is_active=True)
        if self.value() == "draft":
            return queryset.filter(is_active=False, first_published_at__isnull=True)
        if self.value() == "inactive":
            return queryset.filter(is_active=False, first_published_at__isnull=False)
        return queryset


@admin.register(TemplateVersion)
class TemplateVersionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Versions are immutable: adding one appends it (as a draft unless "Publish now");
    publishing and rolling back move the locale's live pointer."""

    list_display = ["__str__", "template", "locale", "version", "status", "subject",
                    "notifications", "created_at"]
    list_display_links = ["__str__"]
    list_filter = [VersionStatusFilter, "locale", "template__client"]
    list_select_related = ["template"]
    search_fields = ["template__key", "subject"]
    show_full_result_count = False
    actions = ["publish_versions", "rollback_versions"]
    change_form_template = "admin/templates/templateversion/change_form.html"
    add_fields = ["template", "locale", "then", *CONTENT_PARTS]
    view_fields = ["template", "locale", "version", "status", "required_variables", "created_at",
                   "notifications", "preview", "diff", *CONTENT_PARTS]

    def get_queryset(self, request: HttpRequest) -> QuerySet[TemplateVersion]:
        return with_notification_count(with_version_status(super().get_queryset(request)))

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = VersionAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.view_fields if obj is not None else self.add_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return self.view_fields if obj is not None else []

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """`?from=<version id>`: start a new draft from that version's content."""
        initial = super().get_changeform_initial_data(request)
        source_id = request.GET.get("from")
        if source_id:
            source = TemplateVersion.objects.filter(pk=source_id).first() if _is_uuid(source_id) else None
            if source is not None:
                initial.update(_content_of(source))  # type: ignore[arg-type]
                initial.update(template=str(source.template_id), locale=source.locale)
        return initial

    def save_model(self, request: HttpRequest, obj: TemplateVersion, form: Any, change: bool) -> None:
        if change:
            return  # immutable
        # A POST without the choice (scripts, older forms) publishes, as adding always did.
        publish = form.cleaned_data.get("then") != "draft"
        created = template_version_create(
            template=obj.template, locale=form.cleaned_data["locale"], publish=publish,
            actor=_actor(request), **form.content(),
        )
        obj.pk, obj.version, obj.created_at = created.pk, created.version, created.created_at
        obj.required_variables = created.required_variables
        obj._state.adding = False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # immutable: the change page is a read-only view

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_publish_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("templates.publish_templateversion"))

    # --- columns and read-only panels

    @admin.display(description="status")
    def status(self, obj: TemplateVersion) -> str:
        return _status(obj)

    @admin.display(description="notifications", ordering="notification_count")
    def notifications(self, obj: TemplateVersion) -> SafeString:
        url = reverse("admin:notifications_notification_changelist")
        count = getattr(obj, "notification_count", 0)
        return format_html('<a href="{}?template_version__id__exact={}">{} notification{}</a>',
                           url, obj.pk, count, "" if count == 1 else "s")

    @admin.display(description="preview (sample variables)")
    def preview(self, obj: TemplateVersion) -> SafeString:
        template = obj.template
        variables = sample_variables_for(obj, template.sample_variables)
        try:
            context = preview_context(obj, variables)
        except RenderError as exc:  # cannot happen with placeholders, but never break the page
            return format_html('<p class="errornote">{}</p>', exc)
        panels = []
        for channel in preview_channels(obj, template.channels):
            try:
                panels.append(_preview_panel(channel, preview_channel(obj, channel, context)))
            except RenderError as exc:
                panels.append(format_html(
                    '<div style="flex:1 1 320px;min-width:280px"><h3>{}</h3>'
                    '<p class="errornote">{}</p></div>', channel, exc))
        note = format_html('<p class="help">Variables: <code>{}</code> — set real-looking ones in the '
                           "template's sample variables.</p>", _json(variables))
        return format_html('{}<div style="display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start">'
                           "{}</div>", note, format_html_join("", "{}", ((p,) for p in panels)))

    @admin.display(description="changes against the live version of its locale")
    def diff(self, obj: TemplateVersion) -> SafeString:
        pointer = active_pointer(template=obj.template, locale=obj.locale)
        if pointer is None:
            return format_html("No live version for {} yet: everything is new.", obj.locale)
        if pointer.version_id == obj.pk:
            return format_html("This is the live version for {}.", obj.locale)
        live = pointer.version
        diffs = content_diff(live, obj, old_label=f"v{live.version}", new_label=f"v{obj.version}")
        if not diffs:
            return format_html("Same content as the live version v{}.", live.version)
        return format_html_join("", "<h4>{}</h4>{}",
                                ((part, _diff_block(lines)) for part, lines in diffs.items()))

    # --- publish / roll back: admin actions and buttons

    @admin.action(description="Publish the selected versions (make them live for their locale)",
                  permissions=["publish"])
    def publish_versions(self, request: HttpRequest, queryset: QuerySet[TemplateVersion]) -> None:
        self._apply(request, queryset, rollback=False)

    @admin.action(description="Roll back to the selected versions", permissions=["publish"])
    def rollback_versions(self, request: HttpRequest, queryset: QuerySet[TemplateVersion]) -> None:
        self._apply(request, queryset, rollback=True)

    def _apply(self, request: HttpRequest, queryset: QuerySet[TemplateVersion], *, rollback: bool) -> None:
        versions = list(queryset.select_related("template"))
        keys = [(v.template_id, locale_key(v.locale)) for v in versions]
        if len(set(keys)) != len(keys):
            messages.error(request, "Select at most one version per template and locale.")
            return
        for version in versions:
            self._publish_one(request, version, rollback=rollback)

    def _publish_one(self, request: HttpRequest, version: TemplateVersion, *, rollback: bool) -> None:
        try:
            if rollback:
                template_rollback(template=version.template, locale=version.locale,
                                  to_version=version, actor=_actor(request))
            else:
                template_version_publish(version=version, actor=_actor(request))
        except ApplicationError as exc:
            messages.error(request, f"{version}: {exc.message}")
            return
        verb = "Rolled back to" if rollback else "Published"
        messages.success(request, f"{verb} {version}: it is live for {version.locale}.")

    def get_urls(self) -> list[URLPattern]:
        own = [
            path("<uuid:version_id>/publish/", self.admin_site.admin_view(self.publish_view),
                 name="templates_templateversion_publish"),
            path("<uuid:version_id>/rollback/", self.admin_site.admin_view(self.rollback_view),
                 name="templates_templateversion_rollback"),
        ]
        return own + super().get_urls()

    def publish_view(self, request: HttpRequest, version_id: str) -> HttpResponse:
        return self._button(request, version_id, rollback=False)

    def rollback_view(self, request: HttpRequest, version_id: str) -> HttpResponse:
        return self._button(request, version_id, rollback=True)

    def _button(self, request: HttpRequest, version_id: str, *, rollback: bool) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(status=405)
        if not self.has_publish_permission(request):
            raise PermissionDenied
        version = get_object_or_404(TemplateVersion.objects.select_related("template"), pk=version_id)
        self._publish_one(request, version, rollback=rollback)
        return HttpResponseRedirect(_version_url(version.pk))

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], add: bool = False,
                           change: bool = False, form_url: str = "", obj: Any = None) -> HttpResponse:
        if obj is not None:
            pointer = active_pointer(template=obj.template, locale=obj.locale)
            live = pointer.version if pointer is not None else None
            context.update(
                can_publish=self.has_publish_permission(request) and live != obj,
                is_older_than_live=live is not None and obj.version < live.version,
                publish_url=reverse("admin:templates_templateversion_publish", args=[obj.pk]),
                rollback_url=reverse("admin:templates_templateversion_rollback", args=[obj.pk]),
                new_draft_url=reverse("admin:templates_templateversion_add") + f"?from={obj.pk}",
            )
        return super().render_change_form(request, context, add=add, change=change,
                                          form_url=form_url, obj=obj)


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


_PRE = "white-space:pre-wrap;word-break:break-word;background:#f8f8f8;padding:8px;margin:0"


def _text_block(label: str, text: str) -> SafeString:
    return format_html('<div><b>{}</b><pre style="{}">{}</pre></div>', label, _PRE, text)


def _preview_panel(channel: str, parts: dict[str, Any]) -> SafeString:
    blocks: list[SafeString] = []
    if channel == "email":
        blocks.append(_text_block("Subject", parts["subject"]))
        if parts["html"]:
            # srcdoc is an attribute: format_html escapes the HTML (& < > " '), the browser
            # unescapes it into the frame's document. sandbox="" = no scripts, no same origin,
            # no forms, no top navigation.
            blocks.append(format_html(
                '<div><b>HTML</b><iframe sandbox="" referrerpolicy="no-referrer" title="HTML email" '
                'srcdoc="{}" style="width:100%;height:420px;border:1px solid #ccc;background:#fff">'
                "</iframe></div>", parts["html"]))
        if parts["text"]:
            blocks.append(_text_block("Text", parts["text"]))
    elif channel in ("sms", "whatsapp"):
        length = len(parts["body"])
        label = "SMS" if channel == "sms" else "WhatsApp"
        blocks.append(_text_block(f"{label} ({length} character{'' if length == 1 else 's'})",
                                  parts["body"]))
        if parts.get("content_sid"):
            blocks.append(_text_block("Content SID", parts["content_sid"]))
    else:
        blocks.append(_text_block("Title", parts["title"]))
        blocks.append(_text_block("Body", parts["body"]))
        if parts["data"]:
            blocks.append(_text_block("Data", _json(parts["data"])))
    return format_html('<div style="flex:1 1 320px;min-width:280px"><h3>{}</h3>{}</div>', channel,
                       format_html_join("", "{}", ((b,) for b in blocks)))


def _diff_block(lines: list[str]) -> SafeString:
    colours = {"+": "#e6ffed", "-": "#ffeef0", "@": "#f1f8ff"}

    def line_style(line: str) -> str:
        if line.startswith(("+++", "---")):
            return "color:#666"
        return f"background:{colours.get(line[:1], 'transparent')}"

    rows = format_html_join("", '<span style="display:block;{}">{}</span>',
                            ((line_style(ln), ln or " ") for ln in lines))
    return format_html('<pre style="{};font-size:12px">{}</pre>', _PRE, rows)
