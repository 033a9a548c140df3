"""`/demo/inbox/`: the inbox widget for the demo recipient, on with DEMO_PAGES only."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client as HttpClient

from apps.inbox.tokens import read_inbox_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(settings: Any) -> None:
    settings.DEMO_PAGES = True
    call_command("demo", "--json", stdout=io.StringIO())


def test_the_demo_page_is_off_unless_demo_pages_is_on(settings: Any) -> None:
    call_command("demo", "--json", stdout=io.StringIO())
    settings.DEMO_PAGES = False
    assert HttpClient().get("/demo/inbox/").status_code == 404
    assert HttpClient().post("/demo/inbox/token").status_code == 404


def test_the_demo_page_mounts_the_widget_with_a_token_for_the_demo_recipient(demo: None) -> None:
    response = HttpClient().get("/demo/inbox/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'src="/static/notifyhub/inbox.js"' in html
    assert 'data-refresh="demoRefreshToken"' in html
    token = html.split('data-token="', 1)[1].split('"', 1)[0]
    assert read_inbox_token(token).recipient_id == "demo_user"
    assert "/preferences/" in html


def test_the_refresh_hook_gets_a_new_token(demo: None) -> None:
    body = HttpClient().post("/demo/inbox/token").json()
    assert set(body) == {"token", "expires_at", "stream_url"}
    assert read_inbox_token(body["token"]).recipient_id == "demo_user"


def test_the_pages_button_sends_the_welcome_template_in_app(demo: None) -> None:
    from apps.notifications.models import Delivery

    response = HttpClient().post("/demo/inbox/send")
    assert response.status_code == 202, response.json()
    assert Delivery.objects.get(notification_id=response.json()["id"]).channel == "in_app"
