"""The admin: preferences edited through the service (consent with source admin), consent
history read-only, lists without N+1."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.preferences.models import ConsentRecord, PreferenceProfile
from apps.preferences.services import ChangeContext, PreferenceChanges, preference_update
from tests.factories import RecipientFactory

pytestmark = pytest.mark.django_db

API = ChangeContext(source="api", actor="api_key:test")


def form_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "email_enabled": "on", "sms_enabled": "on", "whatsapp_enabled": "on", "push_enabled": "on",
        "in_app_enabled": "on", "email_quiet_hours": "", "sms_quiet_hours": "",
        "whatsapp_quiet_hours": "", "push_quiet_hours": "",
        "opted_out_categories": "", "quiet_hours_start": "",
        "quiet_hours_end": "", "quiet_hours_timezone": "", "frequency_caps": "{}",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_an_admin_edit_goes_through_the_service_and_records_the_admin(
    admin_client: Any, admin_user: Any, ada: Any
) -> None:
    preference_update(recipient=ada, changes=PreferenceChanges(categories={"updates": False}),
                      context=API)
    url = f"/admin/preferences/preferenceprofile/{ada.pk}/change/"
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, form_data(
        sms_enabled=None, opted_out_categories="marketing", quiet_hours_start="22:00",
        quiet_hours_end="07:00", frequency_caps='{"promo": {"limit": 2, "period": "week"}}'))
    assert response.status_code == 302, response.content.decode()[:3000]
    profile = PreferenceProfile.objects.get(recipient=ada)
    assert profile.channels["sms"] == {"enabled": False}
    assert profile.categories == {"updates": True, "marketing": False}
    assert profile.frequency_caps == {"promo": {"limit": 2, "period": "week"}}
    records = ConsentRecord.objects.filter(source="admin").order_by("id")
    assert {r.actor for r in records} == {f"admin:{admin_user.username}"}
    assert sorted((r.action, r.channel or r.category) for r in records) == [
        ("opt_in", "updates"), ("opt_out", "marketing"), ("opt_out", "sms"), ("update", ""),
        ("update", "promo")]
    page = admin_client.get(url).content.decode()
    assert "Consent history" in page and f"admin:{admin_user.username}" in page
    # Saving again without changes records nothing.
    admin_client.post(url, form_data(
        sms_enabled=None, opted_out_categories="marketing", quiet_hours_start="22:00",
        quiet_hours_end="07:00", frequency_caps='{"promo": {"limit": 2, "period": "week"}}'))
    assert ConsentRecord.objects.filter(source="admin").count() == 5


def test_the_admin_refuses_a_critical_opt_out(admin_client: Any, ada: Any) -> None:
    preference_update(recipient=ada, changes=PreferenceChanges(), context=API)
    url = f"/admin/preferences/preferenceprofile/{ada.pk}/change/"
    response = admin_client.post(url, form_data(opted_out_categories="security"))
    assert response.status_code == 200
    assert "critical" in response.content.decode()
    assert not ConsentRecord.objects.exists()


def test_an_admin_can_add_preferences_for_a_recipient(admin_client: Any, ada: Any) -> None:
    response = admin_client.post("/admin/preferences/preferenceprofile/add/",
                                 form_data(recipient=str(ada.pk), push_enabled=None))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert PreferenceProfile.objects.get(recipient=ada).channels["push"] == {"enabled": False}


def _queries(admin_client: Any, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get(url).status_code == 200
    return len(queries)


def test_lists_and_filters_cost_the_same_for_many_rows(admin_client: Any, client_tenant: Any) -> None:
    urls = ["/admin/preferences/preferenceprofile/?channel_off=sms",
            "/admin/preferences/preferenceprofile/?quiet_hours=no",
            "/admin/preferences/consentrecord/?source__exact=api"]

    def add(count: int) -> None:
        for i in range(count):
            recipient = RecipientFactory(client=client_tenant)
            preference_update(recipient=recipient, context=API, changes=PreferenceChanges(
                channels={"sms": {"enabled": i % 2 == 0}}, categories={"marketing": False}))

    add(2)
    few = [_queries(admin_client, url) for url in urls]
    add(10)
    assert [_queries(admin_client, url) for url in urls] == few
    page = admin_client.get(urls[0]).content.decode()
    assert page.count('class="field-channels_off"') == 6


def test_consent_records_cannot_be_changed_or_deleted(admin_client: Any, ada: Any) -> None:
    preference_update(recipient=ada, changes=PreferenceChanges(categories={"marketing": False}),
                      context=API)
    record = ConsentRecord.objects.get()
    base = f"/admin/preferences/consentrecord/{record.pk}"
    assert admin_client.get(f"{base}/change/").status_code == 200  # view only
    admin_client.post(f"{base}/change/", {"action": "opt_in"})
    assert admin_client.post(f"{base}/delete/", {"post": "yes"}).status_code == 403
    record.refresh_from_db()
    assert record.action == "opt_out"
    assert admin_client.post(f"/admin/preferences/preferenceprofile/{ada.pk}/delete/",
                             {"post": "yes"}).status_code == 403


class _FormReader(HTMLParser):
    """What a browser posts for the page's form, unchanged: every named input (checkboxes only
    when checked), select and textarea."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        name = a.get("name", "")
        if tag == "input" and name and a.get("type") not in ("submit", "button"):
            if a.get("type") == "checkbox":
                if "checked" in a:
                    self.data[name] = a.get("value") or "on"
            else:
                self.data[name] = a.get("value", "")
        elif tag == "select" and name:
            self._select = name
            self.data.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in a:
            self.data[self._select] = a.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.data[self._textarea] += data.strip()


def test_saving_the_page_as_shown_changes_nothing(admin_client: Any, ada: Any) -> None:
    """The page shows every channel's switch and window (in_app has no window: quiet hours
    never hold it), so a save of the page as it is keeps every channel on and records nothing."""
    preference_update(recipient=ada, changes=PreferenceChanges(
        categories={"updates": False}, channels={"email": {"quiet_hours": "21:00-07:00"}}),
        context=API)
    url = f"/admin/preferences/preferenceprofile/{ada.pk}/change/"
    page = admin_client.get(url).content.decode()
    for channel in ("email", "sms", "whatsapp", "push", "in_app"):
        assert f'name="{channel}_enabled"' in page, channel
    assert 'name="email_quiet_hours"' in page and 'value="21:00-07:00"' in page
    assert 'name="in_app_quiet_hours"' not in page
    assert "Quiet hours never hold in-app messages" in page
    reader = _FormReader()
    reader.feed(page)
    before = ConsentRecord.objects.count()

    response = admin_client.post(url, {**reader.data, "_save": "Save"})

    assert response.status_code == 302, response.content.decode()[:3000]
    profile = PreferenceProfile.objects.get(recipient=ada)
    assert all((spec or {}).get("enabled") is not False for spec in profile.channels.values())
    assert profile.channels["email"]["quiet_hours"] == "21:00-07:00"
    assert ConsentRecord.objects.count() == before


def test_an_in_app_window_stored_through_the_api_is_left_as_it_is(admin_client: Any,
                                                                    ada: Any) -> None:
    preference_update(recipient=ada, changes=PreferenceChanges(
        channels={"in_app": {"quiet_hours": "22:00-06:00"}}), context=API)
    url = f"/admin/preferences/preferenceprofile/{ada.pk}/change/"
    response = admin_client.post(url, form_data(sms_enabled=None))
    assert response.status_code == 302, response.content.decode()[:3000]
    profile = PreferenceProfile.objects.get(recipient=ada)
    assert profile.channels["in_app"] == {"quiet_hours": "22:00-06:00"}
    assert profile.channels["sms"] == {"enabled": False}
