"""Staff with the change permission (the Product team and Administrator roles; Support reads
them) edit a recipient's preferences here; every save goes through the service, so it is
recorded as consent evidence (source `admin`, actor `admin:<username>`). Consent records are
read-only: no one edits or deletes evidence from the admin."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from apps.core.admin_utils import HashedSearchMixin, ReadOnlyAdminMixin
from apps.notifications.models import Channel

from .api.serializers import CATEGORY_PATTERN, FrequencyCapSerializer
from .models import ConsentRecord, ConsentSource, PreferenceProfile
from .selectors import SILENT_CHANNELS, critical_categories
from .services import ChangeContext, PreferenceChanges, QuietHours, preference_update
from .timing import Window

HISTORY_LIMIT = 50
_CATEGORY = re.compile(CATEGORY_PATTERN)


def _enabled_field(channel: str) -> str:
    return f"{channel}_enabled"


def _window_field(channel: str) -> str:
    return f"{channel}_quiet_hours"


# Quiet hours never hold a silent channel (in_app: docs/preferences.md), so the form has no
# window for it, and saving leaves whatever the API stored for it as it is.
WINDOW_CHANNELS = [channel for channel in Channel.values if channel not in SILENT_CHANNELS]
QUIET_HOURS_HELP = ("Holds every channel except in-app messages (they make no sound: they wait "
                    "in the inbox) and critical categories.")


class PreferenceProfileForm(forms.ModelForm):  # type: ignore[type-arg]
    opted_out_categories = forms.CharField(
        required=False, help_text="Comma-separated categories this recipient opted out of.")

    class Meta:
        model = PreferenceProfile
        fields = ["recipient", "quiet_hours_start", "quiet_hours_end", "quiet_hours_timezone",
                  "frequency_caps"]
        help_texts = {"frequency_caps": 'e.g. {"marketing": {"limit": 3, "period": "day"}}'}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        profile = self.instance
        for channel in Channel.values:
            spec = (profile.channels or {}).get(channel) or {}
            self.fields[_enabled_field(channel)].initial = spec.get("enabled", True) is not False
            if channel in WINDOW_CHANNELS:
                self.fields[_window_field(channel)].initial = spec.get("quiet_hours") or ""
        self.fields["opted_out_categories"].initial = ", ".join(
            sorted(k for k, v in (profile.categories or {}).items() if v is False))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        critical = critical_categories()
        categories = [c.strip().lower() for c in data.get("opted_out_categories", "").split(",")
                      if c.strip()]
        for category in categories:
            if not _CATEGORY.match(category):
                self.add_error("opted_out_categories", f"Invalid category: {category!r}.")
            elif category in critical:
                self.add_error("opted_out_categories",
                               f"'{category}' is critical: it cannot be opted out of.")
        data["opted_out_categories"] = categories
        for channel in WINDOW_CHANNELS:
            text = data.get(_window_field(channel)) or ""
            try:
                data[_window_field(channel)] = str(Window.parse(text)) if text else None
            except ValueError as exc:
                self.add_error(_window_field(channel), str(exc))
        start, end = data.get("quiet_hours_start"), data.get("quiet_hours_end")
        if (start is None) != (end is None):
            self.add_error("quiet_hours_end", "Give both start and end, or neither.")
        elif start is not None and start == end:
            self.add_error("quiet_hours_end", "Start and end must differ.")
        caps = data.get("frequency_caps") or {}
        if not isinstance(caps, dict):
            self.add_error("frequency_caps", "A JSON object: category → {limit, period}.")
        else:
            for category, cap in caps.items():
                serializer = FrequencyCapSerializer(data=cap)
                if not _CATEGORY.match(str(category)) or not serializer.is_valid():
                    self.add_error("frequency_caps", f"Invalid cap for {category!r}.")
                elif category in critical:
                    self.add_error("frequency_caps", f"'{category}' is critical: it cannot be capped.")
        return data

    def changes(self, stored: PreferenceProfile | None) -> PreferenceChanges:
        """The form's values as changes against the stored profile (the service records only
        what actually differs)."""
        data = self.cleaned_data
        stored_channels = (stored.channels if stored else {}) or {}
        channels: dict[str, dict[str, Any]] = {}
        for channel in Channel.values:
            spec: dict[str, Any] = ({"quiet_hours": data.get(_window_field(channel))}
                                    if channel in WINDOW_CHANNELS else {})
            enabled = bool(data.get(_enabled_field(channel)))
            # Only a box the admin actually flipped: an untouched default is not an opt-in.
            if enabled != ((stored_channels.get(channel) or {}).get("enabled", True) is not False):
                spec["enabled"] = enabled
            channels[channel] = spec
        opted_out = set(data["opted_out_categories"])
        categories = dict.fromkeys(opted_out, False)
        for category, enabled in ((stored.categories if stored else {}) or {}).items():
            if enabled is False and category not in opted_out:
                categories[category] = True
        caps: dict[str, dict[str, Any] | None] = {
            c: {"limit": int(v["limit"]), "period": v["period"]}
            for c, v in (data.get("frequency_caps") or {}).items()
        }
        for category in ((stored.frequency_caps if stored else {}) or {}):
            caps.setdefault(category, None)
        start, end = data.get("quiet_hours_start"), data.get("quiet_hours_end")
        return PreferenceChanges(
            channels=channels, categories=categories, frequency_caps=caps, set_quiet_hours=True,
            quiet_hours=QuietHours(start, end, data.get("quiet_hours_timezone") or "")
            if start is not None and end is not None else None,
        )


def _channel_fields() -> dict[str, forms.Field]:
    fields: dict[str, forms.Field] = {}
    for channel in Channel.values:
        fields[_enabled_field(channel)] = forms.BooleanField(
            required=False, initial=True, label=f"{channel} enabled")
        if channel in WINDOW_CHANNELS:
            fields[_window_field(channel)] = forms.CharField(
                required=False, label=f"{channel} quiet hours",
                help_text="HH:MM-HH:MM; replaces the window below for this channel")
    return fields


# Declared on the class, not added in __init__: the admin renders (and its form factory keeps)
# only the fields a form class declares. Added in __init__ they were never shown, so a save from
# the page posted no channel box and turned every channel off.
_CHANNEL_FIELDS = _channel_fields()
PreferenceProfileForm.base_fields.update(_CHANNEL_FIELDS)
PreferenceProfileForm.declared_fields.update(_CHANNEL_FIELDS)


class ChannelOffFilter(admin.SimpleListFilter):
    title = "channel turned off"
    parameter_name = "channel_off"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(c, c) for c in Channel.values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in Channel.values:
            # JSON containment: served by the GIN index on channels.
            return queryset.filter(channels__contains={self.value(): {"enabled": False}})
        return queryset


class QuietHoursFilter(admin.SimpleListFilter):
    title = "quiet hours"
    parameter_name = "quiet_hours"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "set"), ("no", "not set")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(quiet_hours_start__isnull=self.value() == "no")
        return queryset


@admin.register(PreferenceProfile)
class PreferenceProfileAdmin(HashedSearchMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    form = PreferenceProfileForm
    list_display = ["recipient_id_display", "client", "channels_off", "categories_off",
                    "quiet_hours", "version", "updated_at"]
    list_filter = [ChannelOffFilter, QuietHoursFilter, "client"]
    list_select_related = ["recipient", "client"]
    search_fields = ["=recipient__external_id"]
    hashed_search_fields = ("recipient__email_hash", "recipient__phone_hash")  # encrypted
    autocomplete_fields = ["recipient"]
    show_full_result_count = False
    readonly_fields = ["client", "version", "created_at", "updated_at", "consent_history"]
    fieldsets = [
        (None, {"fields": ["recipient", "client", "version", "created_at", "updated_at"]}),
        ("Channels", {
            "fields": [(_enabled_field(c), _window_field(c)) if c in WINDOW_CHANNELS
                       else _enabled_field(c) for c in Channel.values],
            "description": "A channel turned off receives nothing. Quiet hours never hold "
                           "in-app messages (they make no sound and wait in the inbox), so "
                           "in_app has no quiet-hours window."}),
        ("Quiet hours", {"fields": ["quiet_hours_start", "quiet_hours_end",
                                    "quiet_hours_timezone"],
                         "description": QUIET_HOURS_HELP}),
        ("Categories", {"fields": ["opted_out_categories", "frequency_caps"]}),
        ("Consent", {"fields": ["consent_history"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "recipient"] if obj is not None else fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # would erase preferences without evidence; change them instead

    @admin.display(description="recipient", ordering="recipient__external_id")
    def recipient_id_display(self, obj: PreferenceProfile) -> str:
        return obj.recipient.external_id

    @admin.display(description="channels off")
    def channels_off(self, obj: PreferenceProfile) -> str:
        return ", ".join(sorted(c for c, s in obj.channels.items() if (s or {}).get("enabled") is False))

    @admin.display(description="categories opted out")
    def categories_off(self, obj: PreferenceProfile) -> str:
        return ", ".join(sorted(c for c, v in obj.categories.items() if v is False))

    @admin.display(description="quiet hours")
    def quiet_hours(self, obj: PreferenceProfile) -> str:
        if obj.quiet_hours_start is None or obj.quiet_hours_end is None:
            return ""
        return f"{obj.quiet_hours_start:%H:%M}-{obj.quiet_hours_end:%H:%M} {obj.quiet_hours_timezone}"

    @admin.display(description=f"consent history (latest {HISTORY_LIMIT})")
    def consent_history(self, obj: PreferenceProfile) -> Any:
        if obj.pk is None:
            return ""
        records = ConsentRecord.objects.filter(recipient_id=obj.pk).order_by(
            "-created_at", "-id")[:HISTORY_LIMIT]
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((r.created_at.strftime("%Y-%m-%d %H:%M:%S"), r.action, r.channel or r.category,
              r.source, r.actor, r.ip or "") for r in records),
        )
        url = reverse("admin:preferences_consentrecord_changelist")
        return format_html(
            '<table><tr><th>when</th><th>action</th><th>what</th><th>source</th><th>actor</th>'
            '<th>ip</th></tr>{}</table><p><a href="{}?recipient__id__exact={}">all records</a></p>',
            rows, url, obj.pk,
        )

    def save_model(self, request: HttpRequest, obj: PreferenceProfile,
                   form: PreferenceProfileForm, change: bool) -> None:
        stored = PreferenceProfile.objects.filter(pk=obj.pk).first()
        context = ChangeContext.from_request(request, source=ConsentSource.ADMIN,
                                             actor=f"admin:{request.user.get_username()}")
        saved = preference_update(recipient=obj.recipient, changes=form.changes(stored),
                                  context=context)
        obj.version, obj.updated_at, obj.client_id = saved.version, saved.updated_at, saved.client_id


@admin.register(ConsentRecord)
class ConsentRecordAdmin(HashedSearchMixin, ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["created_at", "client", "recipient", "action", "channel", "category",
                    "source", "actor", "ip"]
    list_filter = ["source", "action", "channel", "client"]
    list_select_related = ["client", "recipient"]
    search_fields = ["=recipient__external_id", "=category"]
    hashed_search_fields = ("actor_hash",)  # the actor is encrypted: exact value only
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = readonly_fields = ("created_at", "client", "recipient", "action", "channel",
                                "category", "source", "actor", "ip", "user_agent", "detail")
