"""Preferences are checked when a delivery is sent: the authoritative moment."""

from __future__ import annotations

from typing import Any

import pytest

from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Delivery
from apps.notifications.services import notification_send
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db


def send(client: Any, category: str, recipient: dict[str, Any], template: str = "news") -> Delivery:
    notification = notification_send(client=client, template_id=template, category=category,
                                     variables={"name": "Ada"}, recipients=[recipient]).notification
    deliveries_dispatch(delivery_ids=[str(d.id) for d in notification.deliveries.all()])
    return notification.deliveries.get()


@pytest.fixture
def news(client_tenant: Any) -> None:
    TemplateFactory(client=client_tenant, key="news")


def test_an_opted_out_category_ends_suppressed_with_the_reason(
    api: Any, client_tenant: Any, news: None, clean_sandbox: Any
) -> None:
    api.put("/api/v1/recipients/ada", {"email": "ada@example.com"}, format="json")
    assert api.post("/api/v1/preferences/ada/opt-out", {"category": "marketing"},
                    format="json").status_code in (200, 201)
    delivery = send(client_tenant, "marketing", {"id": "ada"})
    assert (delivery.status, delivery.error_code) == ("suppressed", "category_opted_out")
    assert clean_sandbox.messages() == []
    security = send(client_tenant, "security", {"id": "ada"})  # critical categories bypass
    assert security.status == "sent"


def test_a_disabled_channel_ends_suppressed(api: Any, client_tenant: Any, news: None,
                                            clean_sandbox: Any) -> None:
    api.put("/api/v1/recipients/ada", {"email": "ada@example.com"}, format="json")
    api.patch("/api/v1/preferences/ada/channels/email", {"enabled": False}, format="json")
    delivery = send(client_tenant, "updates", {"id": "ada"})
    assert (delivery.status, delivery.error_code) == ("suppressed", "channel_disabled")


def test_quiet_hours_hold_the_delivery_without_spending_an_attempt(
    api: Any, client_tenant: Any, news: None, clean_sandbox: Any
) -> None:
    api.put("/api/v1/recipients/ada", {"email": "ada@example.com", "timezone": "UTC"}, format="json")
    response = api.put("/api/v1/preferences/ada", {
        "quiet_hours": {"start": "00:00", "end": "23:59", "timezone": "UTC"}}, format="json")
    assert response.status_code == 200, response.json()
    delivery = send(client_tenant, "updates", {"id": "ada"})
    assert (delivery.status, delivery.attempts) == ("scheduled", 0)
    assert delivery.due_at is not None and delivery.due_at == delivery.lease_until
    held = delivery.events.get(event="held")
    assert held.detail["reason"] == "quiet_hours"
    assert clean_sandbox.messages() == []


def test_emails_carry_one_click_unsubscribe_headers(client_tenant: Any, news: None,
                                                    clean_sandbox: Any) -> None:
    send(client_tenant, "marketing", {"id": "ada", "email": "ada@example.com"})
    [message] = clean_sandbox.messages(to="ada@example.com")
    assert message["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/api/v1/preferences/unsubscribe/" in message["headers"]["List-Unsubscribe"]


def test_the_one_click_unsubscribe_link_in_an_email_stops_the_next_one(
    client_tenant: Any, news: None, clean_sandbox: Any
) -> None:
    from urllib.parse import urlsplit

    from django.test import Client as HttpClient

    send(client_tenant, "marketing", {"id": "ada", "email": "ada@example.com"})
    [message] = clean_sandbox.messages(to="ada@example.com")
    link = message["headers"]["List-Unsubscribe"].strip("<>")
    response = HttpClient().post(urlsplit(link).path, "List-Unsubscribe=One-Click",
                                 content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200

    again = send(client_tenant, "marketing", {"id": "ada"})
    assert (again.status, again.error_code) == ("suppressed", "category_opted_out")
    updates = send(client_tenant, "updates", {"id": "ada"})  # only that category
    assert updates.status == "sent"


def test_an_email_footer_links_to_the_unsubscribe_and_the_preference_center(
    client_tenant: Any, clean_sandbox: Any
) -> None:
    """Email content can read the recipient's own links (templates.rendering.LINK_NAMES): the
    footer's unsubscribe link is the List-Unsubscribe one and lands on the preference
    center; a critical category has none; neither is a variable the sender must give."""
    from urllib.parse import urlsplit

    from django.test import Client as HttpClient

    TemplateFactory(client=client_tenant, key="footer", version__html_body=(
        '<p>Hi {{ name }}</p><footer><a href="{{ unsubscribe_url }}">Unsubscribe</a> · '
        '<a href="{{ preferences_url }}">Preferences</a></footer>'),
        version__text_body="Hi {{ name }}. Unsubscribe: {{ unsubscribe_url or 'none' }}")
    for who in ("ada", "bob"):
        send(client_tenant, "marketing", {"id": who, "email": f"{who}@example.com"}, "footer")
    [ada] = clean_sandbox.messages(to="ada@example.com")
    [bob] = clean_sandbox.messages(to="bob@example.com")
    unsubscribe = ada["headers"]["List-Unsubscribe"].strip("<>")
    assert f'href="{unsubscribe}"' in ada["html"]
    assert bob["headers"]["List-Unsubscribe"].strip("<>") in bob["html"]  # each their own
    assert unsubscribe not in bob["html"]
    preferences = ada["html"].split('href="')[2].split('"')[0]
    assert "/preferences/" in preferences and preferences not in bob["html"]

    http = HttpClient()
    landed = http.get(urlsplit(unsubscribe).path)
    assert landed.status_code == 302 and "/preferences/" in landed["Location"]
    page = http.get(urlsplit(preferences).path)
    assert page.status_code == 200 and b"Save preferences" in page.content

    send(client_tenant, "security", {"id": "ada"}, "footer")  # critical: nothing to leave
    critical = [m for m in clean_sandbox.messages(to="ada@example.com") if m is not ada]
    assert "Unsubscribe: none" in critical[-1]["text"]
