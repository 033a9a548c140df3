"""Each role opens and changes what it should in the admin, and nothing else — logged in
through the real login form. Writes hidden behind admin actions and buttons (publish,
re-drive, revoke, run now, replay) check their own permission."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client as HttpClient

from apps.accounts.roles import ADMINISTRATOR, PRODUCT_TEAM, SUPPORT
from apps.clients.models import ApiKey
from apps.clients.services import api_key_create
from apps.notifications.models import Suppression
from apps.segments.services import segment_create
from apps.templates.services import template_version_create
from tests.factories import ClientFactory, RecipientFactory, TemplateFactory
from tests.notifications.test_redrive import failed_notification

pytestmark = pytest.mark.django_db

Browser = Callable[[str], HttpClient]

PAGES = {
    "/admin/": {PRODUCT_TEAM, SUPPORT, ADMINISTRATOR},
    "/admin/templates/template/": {PRODUCT_TEAM, ADMINISTRATOR},
    "/admin/templates/template/add/": {PRODUCT_TEAM, ADMINISTRATOR},
    "/admin/templates/templateversion/add/": {PRODUCT_TEAM, ADMINISTRATOR},
    "/admin/segments/segment/add/": {PRODUCT_TEAM, ADMINISTRATOR},
    "/admin/scheduling/recurringsend/add/": {PRODUCT_TEAM, ADMINISTRATOR},
    "/admin/preferences/preferenceprofile/": {PRODUCT_TEAM, SUPPORT, ADMINISTRATOR},
    "/admin/preferences/preferenceprofile/add/": {PRODUCT_TEAM, ADMINISTRATOR},
    "/admin/notifications/notification/": {PRODUCT_TEAM, SUPPORT, ADMINISTRATOR},
    "/admin/notifications/delivery/": {PRODUCT_TEAM, SUPPORT, ADMINISTRATOR},
    "/admin/notifications/suppression/": {SUPPORT, ADMINISTRATOR},
    "/admin/audit/auditlog/": {SUPPORT, ADMINISTRATOR},
    "/admin/recipients/recipient/": {PRODUCT_TEAM, SUPPORT, ADMINISTRATOR},
    "/admin/recipients/recipient/add/": {ADMINISTRATOR},
    "/admin/clients/client/": {ADMINISTRATOR},
    "/admin/clients/apikey/add/": {ADMINISTRATOR},
    "/admin/webhooks/webhookendpoint/": {ADMINISTRATOR},
    "/admin/webhooks/webhookmessage/": {ADMINISTRATOR},
    "/admin/auth/user/": {ADMINISTRATOR},
    "/admin/auth/group/": {ADMINISTRATOR},
    "/admin/otp_totp/totpdevice/": {ADMINISTRATOR},
    "/admin/django_celery_beat/periodictask/": {ADMINISTRATOR},
}


@pytest.mark.parametrize("role", [PRODUCT_TEAM, SUPPORT, ADMINISTRATOR])
def test_each_role_opens_only_its_pages(logged_in: Browser, role: str) -> None:
    browser = logged_in(role)
    opened = {url for url in PAGES if browser.get(url).status_code == 200}
    refused = {url: browser.get(url).status_code for url in PAGES if url not in opened}
    assert opened == {url for url, roles in PAGES.items() if role in roles}, refused
    assert set(refused.values()) <= {403}


def test_the_index_lists_only_what_the_role_may_see(logged_in: Browser) -> None:
    page = logged_in(SUPPORT).get("/admin/").content.decode()
    assert "/admin/audit/auditlog/" in page and "/admin/notifications/delivery/" in page
    assert "/admin/templates/template/" not in page and "/admin/clients/" not in page


def test_support_cannot_publish_a_template(logged_in: Browser) -> None:
    template = TemplateFactory()
    draft = template_version_create(template=template, subject="two", text_body="x", publish=False)
    support = logged_in(SUPPORT)

    assert support.post(f"/admin/templates/templateversion/{draft.pk}/publish/").status_code == 403
    assert support.post("/admin/templates/templateversion/",
                        {"action": "publish_versions", "_selected_action": [str(draft.pk)]}
                        ).status_code == 403
    template.refresh_from_db()
    assert template.active_version != draft


def test_product_team_edits_and_publishes_templates(logged_in: Browser) -> None:
    template = TemplateFactory()
    draft = template_version_create(template=template, subject="two", text_body="x", publish=False)
    product = logged_in(PRODUCT_TEAM)

    page = product.get(f"/admin/templates/templateversion/{draft.pk}/change/").content.decode()
    assert f"/admin/templates/templateversion/{draft.pk}/publish/" in page
    assert product.post(f"/admin/templates/templateversion/{draft.pk}/publish/").status_code == 302
    template.refresh_from_db()
    assert template.active_version == draft


def test_support_redrives_dead_letters_and_product_team_cannot(logged_in: Browser) -> None:
    client = ClientFactory()
    notification = failed_notification(client, "a@example.com")
    delivery = notification.deliveries.get()
    redrive = {"action": "redrive", "_selected_action": [str(delivery.id)]}

    logged_in(PRODUCT_TEAM).post("/admin/notifications/delivery/", redrive)
    delivery.refresh_from_db()
    assert delivery.status == "failed"  # the action is not theirs: nothing happened

    support = logged_in(SUPPORT)
    assert "Re-drive the selected failed deliveries" in support.get(
        "/admin/notifications/delivery/").content.decode()
    support.post("/admin/notifications/delivery/", redrive)
    delivery.refresh_from_db()
    assert delivery.status == "queued"


def test_support_cannot_lift_a_suppression_or_edit_a_recipient(logged_in: Browser) -> None:
    client = ClientFactory()
    suppression = Suppression.objects.create(client=client, channel="email", address="x@example.com",
                                             reason="bounce")
    recipient = RecipientFactory(client=client)
    support = logged_in(SUPPORT)

    assert support.post(f"/admin/notifications/suppression/{suppression.pk}/delete/",
                        {"post": "yes"}).status_code == 403
    assert Suppression.objects.filter(pk=suppression.pk).exists()
    response = support.post(f"/admin/recipients/recipient/{recipient.pk}/change/",
                            {"client": str(client.pk), "external_id": recipient.external_id,
                             "email": "changed@example.com", "locale": "en", "timezone": "UTC",
                             "attributes": "{}"})
    assert response.status_code == 403
    recipient.refresh_from_db()
    assert recipient.email != "changed@example.com"


def test_product_team_cannot_delete_a_segment(logged_in: Browser) -> None:
    segment = segment_create(client=ClientFactory(), name="Pro", key="pro",
                             definition={"all": []})
    product = logged_in(PRODUCT_TEAM)
    assert product.post(f"/admin/segments/segment/{segment.pk}/delete/", {"post": "yes"}).status_code == 403
    assert type(segment).objects.filter(pk=segment.pk).exists()


def test_only_administrators_revoke_api_keys(logged_in: Browser) -> None:
    key, _ = api_key_create(client=ClientFactory(), name="ci")
    revoke = {"action": "revoke", "_selected_action": [str(key.pk)]}

    assert logged_in(SUPPORT).post("/admin/clients/apikey/", revoke).status_code == 403
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None
    logged_in(ADMINISTRATOR).post("/admin/clients/apikey/", revoke)
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None


def test_an_administrator_is_not_a_superuser_but_manages_users(logged_in: Browser,
                                                                 make_staff: Any) -> None:
    admin = logged_in(ADMINISTRATOR)
    user = make_staff(SUPPORT)
    assert admin.get(f"/admin/auth/user/{user.pk}/change/").status_code == 200
