"""The hosted preference center: `/preferences/<signed token>/`, a page where a recipient sets
channels, categories, quiet hours and time zone, saved with consent evidence."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client as HttpClient

from apps.audit.models import AuditLog
from apps.preferences.center import center_target, preference_center_url
from apps.preferences.models import ConsentRecord, PreferenceProfile
from apps.preferences.selectors import Decision, PreferenceCheck, preference_decisions
from tests.factories import ClientFactory, RecipientFactory, TemplateFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def page(ada: Any) -> str:
    TemplateFactory(client=ada.client, key="digest", category="marketing")
    TemplateFactory(client=ada.client, key="news", category="updates")
    return urlsplit(preference_center_url(ada.client_id, ada.pk)).path


def decide(recipient: Any, channel: str, category: str, now: datetime | None = None) -> Decision:
    check = PreferenceCheck("d", str(recipient.pk), channel, category, recipient.timezone)
    return preference_decisions(deliveries=[check], now=now or datetime.now(tz=UTC))["d"]


def form_data(**overrides: Any) -> dict[str, Any]:
    """What the page posts when nothing is changed on a default profile in Paris."""
    data: dict[str, Any] = {"channels": ["email", "sms", "whatsapp", "push", "in_app"],
                            "categories": ["marketing", "updates"],
                            "quiet_hours_start": "22:00", "quiet_hours_end": "08:00",
                            "timezone": "Europe/Paris"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def csrf_client() -> HttpClient:
    return HttpClient(enforce_csrf_checks=True)


def post_with_csrf(path: str, data: dict[str, Any], **extra: Any) -> Any:
    browser = csrf_client()
    page = browser.get(path).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, "the form carries a CSRF token"
    return browser.post(path, {**data, "csrfmiddlewaretoken": token.group(1)}, **extra)


def test_the_page_shows_channels_categories_and_critical_ones_locked(page: str) -> None:
    response = HttpClient().get(page)
    assert response.status_code == 200
    html = response.content.decode()
    assert '<html lang="en">' in html
    for channel in ("email", "sms", "whatsapp", "push", "in_app"):
        assert f'id="channel-{channel}" aria-describedby="channels-help" checked' in html
    assert 'value="marketing" id="category-marketing" checked' in html
    # Critical categories are shown, on, and cannot be changed (no name: never posted).
    assert '<input type="checkbox" id="category-security" checked disabled' in html
    assert 'value="security"' not in html
    assert 'id="category-opt_out_confirmation"' not in html
    assert '<option value="Europe/Paris" selected>' in html
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "same-origin"


def test_saving_records_only_the_changes_with_consent_evidence(page: str, ada: Any) -> None:
    response = post_with_csrf(page, form_data(channels=["email", "whatsapp", "push", "in_app"],
                                              categories=["updates"]),
                              HTTP_USER_AGENT="Firefox", REMOTE_ADDR="198.51.100.7")
    assert response.status_code == 302, re.findall(r'<li>.*?</li>', response.content.decode())
    assert response["Location"] == f"{page}?saved=1"

    assert decide(ada, "sms", "updates") == Decision.suppress("channel_disabled")
    assert decide(ada, "email", "marketing") == Decision.suppress("category_opted_out")
    assert decide(ada, "email", "updates").allowed
    records = {(r.channel, r.category, r.action) for r in ConsentRecord.objects.filter(recipient=ada)}
    assert records == {("sms", "", "opt_out"), ("", "marketing", "opt_out")}
    record = ConsentRecord.objects.filter(recipient=ada).first()
    assert record is not None
    assert (record.source, record.ip, record.user_agent) == (
        "preference_center", "198.51.100.7", "Firefox")
    [audit] = AuditLog.objects.filter(object_id=str(ada.pk))
    assert (audit.action, audit.actor_type, audit.actor_display) == (
        "preference.opt_out", "inbound", "preference_center")
    assert audit.recipient_external_id == "ada"

    html = HttpClient().get(response["Location"]).content.decode()
    assert 'role="status">Your preferences were saved.' in html
    assert 'id="channel-sms" aria-describedby="channels-help">' in html  # now unchecked


def test_saving_an_unchanged_page_records_nothing(page: str, ada: Any) -> None:
    assert post_with_csrf(page, form_data()).status_code == 302
    assert not ConsentRecord.objects.filter(recipient=ada).exists()


def test_quiet_hours_and_time_zone_are_saved_and_hold_messages(page: str, ada: Any) -> None:
    post_with_csrf(page, form_data(quiet_hours_enabled="on", quiet_hours_start="21:00",
                                   quiet_hours_end="07:30", timezone="America/New_York"))
    profile = PreferenceProfile.objects.get(recipient=ada)
    assert (profile.quiet_hours_start, profile.quiet_hours_end) == (time(21), time(7, 30))
    assert profile.quiet_hours_timezone == "America/New_York"
    # 03:00 UTC is 22:00 in New York: held until 07:30 there (12:30 UTC).
    decision = decide(ada, "email", "updates", now=datetime(2026, 12, 8, 3, 0, tzinfo=UTC))
    assert decision.verdict == "hold"
    assert decision.until == datetime(2026, 12, 8, 12, 30, tzinfo=UTC)
    [record] = ConsentRecord.objects.filter(recipient=ada)
    assert record.detail["field"] == "quiet_hours"

    # Turning them off again clears them.
    post_with_csrf(page, form_data(timezone="America/New_York"))
    profile.refresh_from_db()
    assert profile.quiet_hours_start is None


def test_the_recipients_own_zone_is_kept_as_following_the_recipient(page: str, ada: Any) -> None:
    post_with_csrf(page, form_data(quiet_hours_enabled="on", timezone="Europe/Paris"))
    assert PreferenceProfile.objects.get(recipient=ada).quiet_hours_timezone == ""


def test_a_critical_category_cannot_be_turned_off_even_by_a_crafted_post(page: str, ada: Any) -> None:
    response = post_with_csrf(page, form_data(categories=["updates", "marketing"],
                                              extra="security"))
    assert response.status_code == 302
    # Leaving "security" out of the post (as an unchecked box would) changes nothing.
    assert decide(ada, "email", "security").allowed
    response = post_with_csrf(page, form_data(categories=["security"]))
    assert response.status_code == 400  # not a choice: refused, nothing saved
    assert not ConsentRecord.objects.filter(recipient=ada).exists()


def test_invalid_quiet_hours_are_a_400_page_naming_the_field(page: str, ada: Any) -> None:
    response = post_with_csrf(page, form_data(quiet_hours_enabled="on", quiet_hours_start="",
                                              quiet_hours_end="25:99", timezone="Mars/Olympus"))
    assert response.status_code == 400
    html = response.content.decode()
    assert 'role="alert"' in html
    assert 'id="id_quiet_hours_start" value="" aria-invalid="true"' in html
    assert 'aria-invalid="true" aria-describedby="err-tz"' in html
    assert not PreferenceProfile.objects.filter(recipient=ada).exists()


def test_a_post_without_the_csrf_token_is_refused(page: str, ada: Any) -> None:
    response = csrf_client().post(page, form_data(channels=[]))
    assert response.status_code == 403
    assert decide(ada, "email", "updates").allowed


def test_the_page_follows_the_recipients_locale(ada: Any) -> None:
    ada.locale = "fr-CA"
    ada.save(update_fields=["locale"])
    html = HttpClient().get(urlsplit(preference_center_url(ada.client_id, ada.pk)).path
                            ).content.decode()
    assert '<html lang="fr">' in html
    assert "Préférences de notification" in html
    assert "Enregistrer les préférences" in html
    assert "toujours envoyé" in html


@pytest.mark.parametrize("method", ["get", "post"])
def test_bad_tampered_or_foreign_tokens_are_a_friendly_404(ada: Any, method: str) -> None:
    good = urlsplit(preference_center_url(ada.client_id, ada.pk)).path
    token = good.split("/")[2]
    other = RecipientFactory(client=ClientFactory())
    from django.core import signing

    from apps.preferences.center import SALT
    foreign = signing.dumps({"c": str(ada.client_id), "r": str(other.pk)}, salt=SALT)
    bad_uuid = signing.dumps({"c": str(ada.client_id), "r": "not-a-uuid"}, salt=SALT)
    for bad in (token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb"), "garbage",
                "x:y:z", foreign, bad_uuid):
        response = getattr(HttpClient(), method)(f"/preferences/{bad}/")
        assert response.status_code == 404, bad
        assert "Link not found" in response.content.decode()
    ada.delete()
    assert getattr(HttpClient(), method)(good).status_code == 404


def test_preference_center_url_is_absolute_and_names_client_and_recipient(
        ada: Any, settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "https://notify.example.com"
    url = preference_center_url(ada.client_id, ada.pk)
    assert url.startswith("https://notify.example.com/preferences/") and url.endswith("/")
    target = center_target(url.split("/")[4])
    assert (target.client_id, target.recipient_id) == (str(ada.client_id), str(ada.pk))


def test_the_committed_translations_are_compiled_from_their_po_files() -> None:
    """The .mo files are committed (no gettext needed to run); they match their .po."""
    import subprocess
    import sys

    from tests.support.processes import REPO_ROOT

    result = subprocess.run([sys.executable, "scripts/compile_messages.py", "--check"],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_an_unsubscribe_token_of_another_recipient_is_not_offered(ada: Any) -> None:
    from apps.preferences.unsubscribe import unsubscribe_url

    other = RecipientFactory(client=ada.client)
    other_link = urlsplit(unsubscribe_url(recipient=other, category="marketing")).path
    page = urlsplit(preference_center_url(ada.client_id, ada.pk)).path
    html = HttpClient().get(page, {"unsubscribe": other_link.rsplit("/", 1)[1]}).content.decode()
    assert "Stop receiving" not in html and other_link not in html
    html = HttpClient().get(page, {"unsubscribe": "garbage"}).content.decode()
    assert "Stop receiving" not in html


def test_categories_and_channels_have_human_labels_in_english_and_french(ada: Any) -> None:
    """Not the title-cased slug ("Otp"): the usual categories have labels, any other is its
    name made readable; the same in French."""
    TemplateFactory(client=ada.client, key="digest", category="marketing")
    TemplateFactory(client=ada.client, key="shipping", category="order_updates")
    page = urlsplit(preference_center_url(ada.client_id, ada.pk)).path

    html = HttpClient().get(page).content.decode()
    for label in ("One-time passcodes", "Security alerts", "News and offers", "Order updates",
                  "SMS (text messages)", "In-app messages"):
        assert label in html, label
    assert "Otp" not in html and "Order_updates" not in html
    assert 'value="order_updates" id="category-order_updates"' in html  # what is posted

    ada.locale = "fr"
    ada.save(update_fields=["locale"])
    html = HttpClient().get(page).content.decode()
    for label in ("Codes à usage unique", "Alertes de sécurité", "Actualités et offres",
                  "Messages dans l\u2019application", "toujours envoyés"):
        assert label in html, label


def test_the_unsubscribe_offer_names_the_category_and_channel_for_people(ada: Any) -> None:
    from apps.preferences.unsubscribe import unsubscribe_token

    page = urlsplit(preference_center_url(ada.client_id, ada.pk)).path
    for category, channel, question in (
            ("marketing", "email", "Stop receiving “News and offers” messages?"),
            ("", "email", "Stop receiving all emails?"),
            ("", "in_app", "Stop receiving all in-app messages?")):
        token = unsubscribe_token(recipient=ada, category=category, channel=channel)
        html = HttpClient().get(page, {"unsubscribe": token}).content.decode()
        assert question in html, question
    ada.locale = "fr"
    ada.save(update_fields=["locale"])
    token = unsubscribe_token(recipient=ada, category="", channel="email")
    assert "Ne plus recevoir aucun e-mail ?" in HttpClient().get(
        page, {"unsubscribe": token}).content.decode()
