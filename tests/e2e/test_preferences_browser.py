"""The hosted preference center in a real browser (Chromium through Playwright): a recipient
turns a category off, and the next send of that category is suppressed by the real worker,
while another category still reaches the provider sandbox."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from rest_framework.test import APIClient

from apps.notifications.models import Delivery
from apps.preferences.center import preference_center_url
from apps.preferences.models import ConsentRecord
from tests.factories import ClientFactory, RecipientFactory, TemplateFactory, api_key_for
from tests.support.browser import screenshot
from tests.support.processes import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def delivery_status(notification_id: str) -> str:
    return Delivery.objects.get(notification_id=notification_id).status


def test_the_preference_center_saves_a_change_that_the_next_send_honours(
    page: Any, live_server: Any, clean_sandbox: Any, start_worker: Any
) -> None:
    tenant = ClientFactory()
    TemplateFactory(client=tenant, key="weekly_deals", category="marketing")
    TemplateFactory(client=tenant, key="order_update", category="updates")
    ada = RecipientFactory(client=tenant, external_id="ada", email="ada@example.com",
                           timezone="Europe/Paris")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(tenant)}")

    # Given the recipient opens their preference center (the link from an email or the widget)
    path = urlsplit(preference_center_url(tenant.pk, ada.pk)).path
    page.goto(f"{live_server.url}{path}")
    assert page.get_by_role("heading", name="Notification preferences").is_visible()
    security = page.get_by_role("checkbox", name="Security")
    assert security.is_checked() and security.is_disabled()  # critical: shown, locked
    screenshot(page, "preference-center", full_page=True)

    # When they turn marketing off and set quiet hours, by keyboard and labels alone
    page.get_by_role("checkbox", name="News and offers").uncheck()
    # (a window that does not hold the update sent below: it starts in two hours in Paris)
    paris_now = datetime.now(ZoneInfo("Europe/Paris"))
    page.get_by_label("Use quiet hours").check()
    page.get_by_label("From").fill(f"{(paris_now + timedelta(hours=2)):%H}:00")
    page.get_by_label("Until").fill(f"{(paris_now + timedelta(hours=3)):%H}:00")
    page.get_by_role("button", name="Save preferences").click()

    # Then the page says so, and the evidence is recorded
    status = page.get_by_role("status")
    status.wait_for()
    assert status.inner_text() == "Your preferences were saved."
    assert not page.get_by_role("checkbox", name="News and offers").is_checked()
    sources = set(ConsentRecord.objects.filter(recipient=ada).values_list("source", flat=True))
    assert sources == {"preference_center"}

    # And the next marketing send is suppressed by the worker; an update still goes out
    start_worker()
    deals = api.post("/api/v1/notifications", {"recipients": ["ada"], "template_id": "weekly_deals",
                                               "variables": {"name": "Ada"}}, format="json").json()
    update = api.post("/api/v1/notifications", {"recipients": ["ada"], "template_id": "order_update",
                                                "variables": {"name": "Ada"}, "priority": "critical"},
                      format="json").json()
    wait_for(lambda: delivery_status(deals["id"]) == "suppressed", timeout=60,
             message="marketing suppressed")
    assert Delivery.objects.get(notification_id=deals["id"]).error_code == "category_opted_out"
    wait_for(lambda: delivery_status(update["id"]) in ("sent", "delivered"), timeout=60,
             message="the update sent")
    assert [m["subject"] for m in clean_sandbox.messages(to="ada@example.com")] == ["Hello Ada"]


def test_the_page_is_french_for_a_french_recipient(page: Any, live_server: Any) -> None:
    tenant = ClientFactory()
    TemplateFactory(client=tenant, key="weekly_deals", category="marketing")
    marie = RecipientFactory(client=tenant, external_id="marie", locale="fr-FR")
    page.goto(f"{live_server.url}{urlsplit(preference_center_url(tenant.pk, marie.pk)).path}")
    assert page.locator("html").get_attribute("lang") == "fr"
    assert page.get_by_role("heading", name="Préférences de notification").is_visible()
    page.get_by_role("checkbox", name="Actualités et offres").uncheck()
    page.get_by_role("button", name="Enregistrer les préférences").click()
    assert page.get_by_role("status").inner_text() == "Vos préférences ont été enregistrées."
    screenshot(page, "preference-center-fr", full_page=True)
