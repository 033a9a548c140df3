from __future__ import annotations

import re
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.clients.models import ApiKey, all_scopes
from tests.factories import ClientFactory

pytestmark = pytest.mark.django_db


def test_creating_a_key_in_the_admin_shows_it_once_and_stores_only_a_hash(admin_client: Any) -> None:
    tenant = ClientFactory()
    response = admin_client.post(
        "/admin/clients/apikey/add/",
        {"client": tenant.pk, "name": "ci", "mode": "live", "scopes": all_scopes()}, follow=True)
    page = response.content.decode()
    match = re.search(r"The new API key is (nh_\S+)", page)
    assert match, page[:2000]
    raw = match.group(1)
    key = ApiKey.objects.get(client=tenant)
    assert raw not in (key.key_hash, key.prefix) and raw.startswith(key.prefix)
    listing = admin_client.get("/admin/clients/apikey/").content.decode()
    assert raw not in listing
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/notifications").status_code == 200


def test_revoke_action_disables_a_key(admin_client: Any) -> None:
    from tests.factories import api_key_for

    tenant = ClientFactory()
    raw = api_key_for(tenant)
    key = ApiKey.objects.get(client=tenant)
    admin_client.post("/admin/clients/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/notifications").status_code == 401


def test_the_add_form_offers_every_scope_as_a_checkbox_all_ticked(admin_client: Any) -> None:
    page = admin_client.get("/admin/clients/apikey/add/").content.decode()
    for scope in all_scopes():
        assert re.search(rf'<input type="checkbox" name="scopes" value="{scope}"[^>]*checked', page), scope
    assert 'name="mode"' in page


def test_a_test_key_with_chosen_scopes_is_created_and_listed(admin_client: Any) -> None:
    tenant = ClientFactory()
    response = admin_client.post(
        "/admin/clients/apikey/add/",
        {"client": tenant.pk, "name": "staging", "mode": "test", "scopes": ["send", "read"]},
        follow=True)
    raw = re.search(r"The new API key is (nh_\S+)", response.content.decode()).group(1)  # type: ignore[union-attr]
    assert raw.startswith("nh_test_")
    key = ApiKey.objects.get(client=tenant)
    assert (key.mode, key.scopes, key.prefix) == ("test", ["send", "read"], raw[:16])
    listing = admin_client.get("/admin/clients/apikey/").content.decode()
    assert "send, read" in listing and "test (sandbox only)" in listing

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/notifications").status_code == 200
    assert api.get("/api/v1/webhooks").status_code == 403


def test_changing_a_keys_scopes_in_the_admin_is_audited_and_takes_effect(admin_client: Any) -> None:
    from apps.audit.models import AuditLog
    from tests.factories import api_key_for

    tenant = ClientFactory()
    raw = api_key_for(tenant)
    key = ApiKey.objects.get(client=tenant)
    response = admin_client.post(f"/admin/clients/apikey/{key.pk}/change/",
                                 {"scopes": ["read"]}, follow=True)
    assert response.status_code == 200
    key.refresh_from_db()
    assert (key.scopes, key.mode, key.name) == (["read"], "live", "test")
    row = AuditLog.objects.get(action="api_key.update")
    assert row.changes["scopes"] == {"from": all_scopes(), "to": ["read"]}

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/notifications").status_code == 200
    assert api.post("/api/v1/notifications", {}, format="json").status_code == 403


def test_client_changes_in_the_admin_are_audited(admin_client: Any, admin_user: Any) -> None:
    from apps.audit.models import AuditLog
    from apps.clients.models import Client

    form = {"name": "Acme", "slug": "acme-audit", "is_active": "on", "default_from_email": "",
            "sms_from": "", "whatsapp_from": "", "delivery_policy": "{}"}
    assert admin_client.post("/admin/clients/client/add/", form).status_code == 302
    client = Client.objects.get(slug="acme-audit")
    admin_client.post(f"/admin/clients/client/{client.pk}/change/", {**form, "name": "Acme Corp"})
    admin_client.post(f"/admin/clients/client/{client.pk}/delete/", {"post": "yes"})

    log = list(AuditLog.objects.filter(object_type="client", object_id=str(client.pk)).order_by("id"))
    assert [r.action for r in log] == ["client.create", "client.update", "client.delete"]
    assert {(r.actor_type, r.actor_display, r.client_id) for r in log} == {
        ("user", admin_user.username, client.pk)}
    assert log[0].changes["slug"] == "acme-audit"
    assert (log[1].changes["before"], log[1].changes["after"]) == ({"name": "Acme"}, {"name": "Acme Corp"})
    assert not Client.objects.filter(pk=client.pk).exists()


def test_the_inbox_signing_secret_is_rotated_and_shown_once(admin_client: Any) -> None:
    from apps.audit.models import AuditLog
    from apps.clients.models import Client
    from tests.factories import ClientFactory

    client = ClientFactory()
    response = admin_client.post("/admin/clients/client/", {
        "action": "rotate_inbox_signing_secret", "_selected_action": [str(client.pk)]},
        follow=True)

    client.refresh_from_db()
    secret = client.inbox_signing_secret
    assert secret.startswith("nhis_") and secret in response.content.decode()
    page = admin_client.get(f"/admin/clients/client/{client.pk}/change/").content.decode()
    assert secret not in page and "shown once" in page
    row = AuditLog.objects.get(action="client.inbox_secret_rotate")
    assert secret not in str(row.changes)
    raw = Client.objects.filter(pk=client.pk).values_list("inbox_signing_secret", flat=True)
    assert raw[0] == secret  # decrypted on read; stored encrypted (apps/core/encrypted_fields)


def test_inbox_allowed_origins_are_validated(admin_client: Any) -> None:
    from tests.factories import ClientFactory

    client = ClientFactory()
    form = {"name": client.name, "slug": client.slug, "is_active": "on", "default_from_email": "",
            "sms_from": "", "whatsapp_from": "", "delivery_policy": "{}", "provider_order": "{}"}
    refused = admin_client.post(f"/admin/clients/client/{client.pk}/change/",
                                {**form, "inbox_allowed_origins": "https://app.example.com/path"})
    saved = admin_client.post(f"/admin/clients/client/{client.pk}/change/",
                              {**form, "inbox_allowed_origins":
                               "https://app.example.com,http://localhost:8000"})

    assert refused.status_code == 200 and "is not an origin" in refused.content.decode()
    assert saved.status_code == 302
    client.refresh_from_db()
    assert client.inbox_allowed_origins == ["https://app.example.com", "http://localhost:8000"]
