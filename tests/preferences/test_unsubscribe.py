"""Signed unsubscribe links: List-Unsubscribe headers, the confirmation page, RFC 8058 one-click."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client as HttpClient

from apps.preferences.models import ConsentRecord, PreferenceProfile
from apps.preferences.selectors import Decision, PreferenceCheck, preference_decisions
from apps.preferences.unsubscribe import list_unsubscribe_headers, unsubscribe_url

pytestmark = pytest.mark.django_db


def path_of(url: str) -> str:
    return urlsplit(url).path


def marketing_allowed(recipient: Any) -> bool:
    check = PreferenceCheck("d", str(recipient.pk), "email", "marketing", "UTC")
    return preference_decisions(deliveries=[check], now=datetime.now(tz=UTC))["d"].allowed


def test_headers_carry_an_absolute_https_link_and_one_click(ada: Any, settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "https://notify.example.com"
    headers = list_unsubscribe_headers(recipient=ada, category="marketing")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = headers["List-Unsubscribe"]
    assert link.startswith("<https://notify.example.com/api/v1/preferences/unsubscribe/")
    assert link.endswith(">")
    assert link[1:-1] == unsubscribe_url(recipient=ada, category="marketing")


def test_critical_categories_have_no_unsubscribe_link(ada: Any) -> None:
    assert list_unsubscribe_headers(recipient=ada, category="security") == {}
    with pytest.raises(ValueError, match="critical"):
        unsubscribe_url(recipient=ada, category="otp")


def test_get_lands_on_the_preference_center_offering_the_unsubscribe_and_changes_nothing(
        ada: Any) -> None:
    link = path_of(unsubscribe_url(recipient=ada, category="marketing"))
    response = HttpClient().get(link, follow=True)
    assert response.status_code == 200
    [(landing, status)] = response.redirect_chain
    assert status == 302 and landing.startswith("/preferences/")
    page = response.content.decode()
    # The link's own unsubscribe comes first, posting back to the link (RFC 8058 path)…
    assert f'<form method="post" action="{link}">' in page
    assert "Stop receiving “News and offers” messages?" in page
    # … next to every other preference.
    assert "Notification preferences" in page and 'name="channels"' in page
    assert response["Cache-Control"] == "no-store"
    assert not PreferenceProfile.objects.exists()
    assert marketing_allowed(ada)


def test_one_click_post_opts_out_and_records_consent(ada: Any) -> None:
    path = path_of(unsubscribe_url(recipient=ada, category="marketing"))
    response = HttpClient().post(path, {"List-Unsubscribe": "One-Click"},
                                 HTTP_USER_AGENT="Gmail one-click", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 200
    assert "no longer receive" in response.content.decode()
    assert not marketing_allowed(ada)
    record = ConsentRecord.objects.get(recipient=ada)
    assert (record.action, record.category, record.source) == ("opt_out", "marketing", "link")
    assert record.actor == ada.email
    assert (record.ip, record.user_agent) == ("203.0.113.9", "Gmail one-click")
    assert record.detail == {"via": "one_click", "via_channel": "email"}
    # Clicking again is fine and records nothing new.
    again = HttpClient().post(path, "List-Unsubscribe=One-Click",
                              content_type="application/x-www-form-urlencoded")
    assert again.status_code == 200
    assert ConsentRecord.objects.filter(recipient=ada).count() == 1


def test_the_pages_own_button_opts_out(ada: Any) -> None:
    path = path_of(unsubscribe_url(recipient=ada, category="updates"))
    assert HttpClient().post(path, {"confirm": "page"}).status_code == 200
    assert ConsentRecord.objects.get(recipient=ada).detail["via"] == "page"


def test_a_link_without_category_turns_the_channel_off(ada: Any) -> None:
    path = path_of(unsubscribe_url(recipient=ada, category=None, channel="email"))
    HttpClient().post(path, {"List-Unsubscribe": "One-Click"})
    check = PreferenceCheck("d", str(ada.pk), "email", "updates", "UTC")
    decision = preference_decisions(deliveries=[check], now=datetime.now(tz=UTC))["d"]
    assert decision == Decision.suppress("channel_disabled")


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_tampered_or_garbage_token_is_400_never_500(ada: Any, method: str) -> None:
    path = path_of(unsubscribe_url(recipient=ada, category="marketing"))
    token = path.rsplit("/", 1)[1]
    tampered = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    for bad in (tampered, "garbage", "x:y:z"):
        response = getattr(HttpClient(), method)(f"/api/v1/preferences/unsubscribe/{bad}")
        assert response.status_code == 400
        assert "not valid" in response.content.decode()
    assert not ConsentRecord.objects.exists()


def test_a_link_to_a_deleted_recipient_is_404(ada: Any) -> None:
    path = path_of(unsubscribe_url(recipient=ada, category="marketing"))
    ada.delete()
    assert HttpClient().get(path).status_code == 404
    assert HttpClient().post(path, {"List-Unsubscribe": "One-Click"}).status_code == 404


def test_unsubscribe_tokens_are_djangos_signed_tokens(settings: Any) -> None:
    """The process-cached signer gives the token `signing.dumps(…, salt=SALT)` gives (so links
    already sent keep working, and SECRET_KEY rotation with SECRET_KEY_FALLBACKS applies), and
    a token signed under another key is refused."""
    import time

    from django.core import signing

    from apps.preferences.unsubscribe import SALT, BadToken, _sign, unsubscribe_target

    payload = {"r": "5f0c1d2e-0000-4000-8000-000000000001", "k": "news", "c": "email"}
    for _ in range(3):  # the two calls must fall in the same second
        second = int(time.time())
        ours, django_token = _sign(payload), signing.dumps(payload, salt=SALT)
        if int(time.time()) == second:
            break
    assert ours == django_token
    assert unsubscribe_target(ours).category == "news"

    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "another-key-" + "x" * 50
    with pytest.raises(BadToken):
        unsubscribe_target(ours)
    settings.SECRET_KEY_FALLBACKS = [old_key]  # rotated: links signed before still work
    assert unsubscribe_target(ours).recipient_id == payload["r"]
    assert unsubscribe_target(_sign(payload)).channel == "email"  # signed with the new key
