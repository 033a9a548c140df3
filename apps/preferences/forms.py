"""The preference center's form: what the recipient ticked, checked, and turned into the
`PreferenceChanges` that differ from what they have now (so saving an unchanged page records
nothing, and a default left as it is gets no consent record)."""

from __future__ import annotations

import zoneinfo
from functools import cache
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from .center import CenterState
from .services import PreferenceChanges, QuietHours


@cache
def timezone_choices() -> list[tuple[str, str]]:
    zones = sorted(z for z in zoneinfo.available_timezones() if "/" in z or z == "UTC")
    return [(z, z.replace("_", " ")) for z in zones]


class PreferenceCenterForm(forms.Form):
    channels = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    # Critical categories are not choices: they are never turned off, whatever is posted.
    categories = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    quiet_hours_enabled = forms.BooleanField(required=False)
    quiet_hours_start = forms.TimeField(required=False, input_formats=["%H:%M", "%H:%M:%S"])
    quiet_hours_end = forms.TimeField(required=False, input_formats=["%H:%M", "%H:%M:%S"])
    timezone = forms.ChoiceField(choices=())

    def __init__(self, *args: Any, state: CenterState, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = state
        self.fields["channels"].choices = [(c, c) for c in state.channels]  # type: ignore[attr-defined]
        self.fields["categories"].choices = [  # type: ignore[attr-defined]
            (c.name, c.name) for c in state.categories if not c.critical]
        zones = timezone_choices()
        if state.timezone not in dict(zones):  # an alias the recipient was given ("US/Pacific")
            zones = [(state.timezone, state.timezone), *zones]
        self.fields["timezone"].choices = zones  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("quiet_hours_enabled"):
            start, end = data.get("quiet_hours_start"), data.get("quiet_hours_end")
            if start is None:
                self.add_error("quiet_hours_start", _("Give the time quiet hours start."))
            if end is None:
                self.add_error("quiet_hours_end", _("Give the time quiet hours end."))
            if start is not None and end is not None and start == end:
                self.add_error("quiet_hours_end", _("Quiet hours must end at another time than they start."))
        return data

    def changes(self) -> PreferenceChanges:
        """What differs from the state the page was built from."""
        data, state = self.cleaned_data, self.state
        on_channels = set(data.get("channels") or [])
        on_categories = set(data.get("categories") or [])
        changes = PreferenceChanges()
        for channel, enabled in state.channels.items():
            if (channel in on_channels) != enabled:
                changes.channels[channel] = {"enabled": channel in on_channels}
        for category in state.categories:
            if not category.critical and (category.name in on_categories) != category.enabled:
                changes.categories[category.name] = category.name in on_categories
        tz = data["timezone"]
        # The recipient's own zone is stored as "" (it then follows the recipient's record).
        stored_tz = "" if tz == state.recipient_timezone else tz
        if data.get("quiet_hours_enabled"):
            new = (data["quiet_hours_start"].replace(second=0, microsecond=0),
                   data["quiet_hours_end"].replace(second=0, microsecond=0), tz)
            if new != (state.quiet_hours_start, state.quiet_hours_end, state.timezone):
                changes.set_quiet_hours = True
                changes.quiet_hours = QuietHours(new[0], new[1], stored_tz)
        elif state.quiet_hours_start is not None:
            changes.set_quiet_hours = True
            changes.quiet_hours = None
        return changes
