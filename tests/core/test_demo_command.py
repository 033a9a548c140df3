from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from apps.clients.models import ApiKey, Client, all_scopes
from apps.templates.models import Template

pytestmark = pytest.mark.django_db


def run_demo() -> dict:
    out = io.StringIO()
    call_command("demo", "--json", stdout=out)
    return json.loads(out.getvalue())


def test_demo_is_idempotent_and_its_example_send_is_accepted() -> None:
    first = run_demo()
    second = run_demo()
    assert first == second
    assert Client.objects.filter(slug="demo").count() == 1
    # One live and one test key, both with every scope.
    assert sorted(ApiKey.objects.values_list("mode", flat=True)) == ["live", "test"]
    assert all(sorted(k.scopes) == sorted(all_scopes()) for k in ApiKey.objects.all())
    assert set(first["templates"]) == set(Template.objects.values_list("key", flat=True))
    for key in ("api_key", "admin_username", "admin_password", "templates", "recipients",
                "example_send"):
        assert key in first

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {first['api_key']}")
    response = api.post("/api/v1/notifications", first["example_send"], format="json")
    assert response.status_code == 202, response.json()
    assert response.json()["test"] is False

    api.credentials(HTTP_AUTHORIZATION=f"Bearer {first['test_api_key']}")
    response = api.post("/api/v1/notifications", first["example_send"], format="json")
    assert response.status_code == 202, response.json()
    assert response.json()["test"] is True


def test_demo_gives_a_reused_key_every_scope_again() -> None:
    run_demo()
    key = ApiKey.objects.get(mode="live")
    key.scopes = ["read"]
    key.save(update_fields=["scopes"])
    run_demo()
    key.refresh_from_db()
    assert sorted(key.scopes) == sorted(all_scopes())


def test_admin_login_from_demo_works(client) -> None:  # type: ignore[no-untyped-def]
    demo = run_demo()
    assert client.login(username=demo["admin_username"], password=demo["admin_password"])
    assert client.get("/admin/").status_code == 200


def test_demo_has_one_staff_user_per_role_who_can_log_in(client) -> None:  # type: ignore[no-untyped-def]
    demo = run_demo()
    assert [s["role"] for s in demo["staff"]] == ["Product team", "Support", "Administrator"]
    pages = {"Product team": "/admin/templates/template/", "Support": "/admin/audit/auditlog/",
             "Administrator": "/admin/clients/client/"}
    for staff in demo["staff"]:
        client.logout()
        response = client.post("/admin/login/", {"username": staff["username"],
                                                 "password": staff["password"], "next": "/admin/"})
        assert response.status_code == 302, staff
        assert client.get(pages[staff["role"]]).status_code == 200, staff
    assert client.get("/admin/auth/user/").status_code == 200  # the last one: Administrator
    client.logout()
    client.post("/admin/login/", {"username": "support", "password": "support"})
    assert client.get("/admin/templates/template/").status_code == 403


def test_the_demo_welcome_template_sends_in_app_and_the_demo_page_origins_are_allowed() -> None:
    demo = run_demo()
    client = Client.objects.get(slug="demo")
    assert {"http://127.0.0.1:8000", "http://localhost:8000"} <= set(client.inbox_allowed_origins)
    welcome = Template.objects.get(client=client, key="welcome")
    assert "in_app" in welcome.channels
    assert welcome.active_version is not None and welcome.active_version.in_app_title

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {demo['api_key']}")
    response = api.post("/api/v1/notifications", demo["more_examples"]["in_app"], format="json")
    assert response.status_code == 202, response.json()
    assert [d["channel"] for d in response.json()["deliveries"]] == ["in_app"]


def test_a_demo_seeded_before_in_app_gets_the_channel_on_the_next_run() -> None:
    run_demo()
    welcome = Template.objects.get(key="welcome")
    Template.objects.filter(pk=welcome.pk).update(channels=["email"])

    run_demo()

    welcome.refresh_from_db()
    assert welcome.channels == ["email", "in_app"]
    assert welcome.versions.count() == 2
