"""/api/v1/templates as a client service sees it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.templates.models import Template, TemplateVersion
from apps.templates.services import template_version_create
from tests.factories import ClientFactory, TemplateFactory, api_key_for

pytestmark = pytest.mark.django_db

URL = "/api/v1/templates"

NEW = {
    "key": "order_shipped",
    "name": "Order shipped",
    "channels": ["email", "sms"],
    "category": "transactional",
    "default_locale": "en",
    "version": {"subject": "Order {{ orderId }} shipped", "text_body": "Hi {{ name }}\n",
                "html_body": "<p>Hi {{ name }}</p>", "sms_body": "Order {{ orderId }} shipped"},
}


def error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


@pytest.fixture
def other_api() -> APIClient:
    api_client = APIClient()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(ClientFactory())}")
    return api_client


# --- create / read / update / delete -------------------------------------------------------

def test_create_with_a_first_version_publishes_it(api: Any, client_tenant: Any) -> None:
    response = api.post(URL, NEW, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["key"] == "order_shipped" and body["default_locale"] == "en"
    assert [(a["locale"], a["version"]) for a in body["active_versions"]] == [("en", 1)]
    template = Template.objects.get(id=body["id"], client=client_tenant)
    assert template.active_version is not None
    assert template.active_version.required_variables == ["name", "orderId"]
    assert template.active_version.text_body == "Hi {{ name }}\n"  # whitespace kept


def test_create_without_content_and_get_by_id_or_key(api: Any) -> None:
    created = api.post(URL, {"key": "bare", "name": "Bare", "channels": ["push"]}, format="json").json()
    assert created["active_versions"] == []
    assert api.get(f"{URL}/{created['id']}").json()["key"] == "bare"
    assert api.get(f"{URL}/bare").json()["id"] == created["id"]


def test_invalid_fields_are_named_in_a_400(api: Any) -> None:
    response = api.post(URL, {"key": "Not a slug!", "name": "", "channels": ["fax"],
                              "default_locale": "english please"}, format="json")
    assert response.status_code == 400
    err = error(response)
    assert err["code"] == "invalid"
    assert set(err["fields"]) == {"key", "name", "channels[0]", "default_locale"}


def test_a_syntax_error_in_the_first_version_is_a_422_naming_the_part(api: Any) -> None:
    body = {**NEW, "version": {"subject": "ok", "html_body": "{% if x %}unclosed"}}
    response = api.post(URL, body, format="json")
    assert response.status_code == 422
    err = error(response)
    assert err["code"] == "template_syntax_error"
    assert list(err["fields"]) == ["html_body"]
    assert not Template.objects.filter(key="order_shipped").exists()  # all or nothing


def test_a_taken_key_is_a_409_and_search_is_a_reserved_key(api: Any) -> None:
    assert api.post(URL, NEW, format="json").status_code == 201
    again = api.post(URL, NEW, format="json")
    assert again.status_code == 409
    assert error(again)["code"] == "template_key_taken"
    reserved = api.post(URL, {**NEW, "key": "search"}, format="json")
    assert reserved.status_code == 400 and "key" in error(reserved)["fields"]


def test_another_clients_template_is_a_404_everywhere(api: Any, other_api: Any) -> None:
    template_id = api.post(URL, NEW, format="json").json()["id"]
    for method, path, body in [
        ("get", f"{URL}/{template_id}", None),
        ("get", f"{URL}/order_shipped", None),
        ("put", f"{URL}/{template_id}", {"name": "Mine now"}),
        ("delete", f"{URL}/{template_id}", None),
        ("get", f"{URL}/{template_id}/versions", None),
        ("post", f"{URL}/{template_id}/versions", {"subject": "x"}),
        ("post", f"{URL}/{template_id}/versions/1/publish", None),
        ("get", f"{URL}/{template_id}/preview", None),
    ]:
        response = getattr(other_api, method)(path, body, format="json")
        assert response.status_code == 404, (method, path, response.content)
        assert error(response)["code"] == "not_found"
    assert other_api.get(URL).json()["results"] == []
    assert Template.objects.get(id=template_id).name == "Order shipped"


def test_put_updates_settings_only(api: Any) -> None:
    template_id = api.post(URL, NEW, format="json").json()["id"]

    response = api.put(f"{URL}/{template_id}", {"name": "Shipped!", "channels": ["email"],
                                                "category": "marketing"}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["name"], response.json()["channels"]) == ("Shipped!", ["email"])

    refused = api.put(f"{URL}/{template_id}", {"key": "renamed", "subject": "x"}, format="json")
    assert refused.status_code == 400
    assert set(error(refused)["fields"]) == {"key", "subject"}

    unpublished = api.put(f"{URL}/{template_id}", {"default_locale": "fr"}, format="json")
    assert unpublished.status_code == 422
    assert error(unpublished)["fields"] == {"default_locale": ["Publish a version in this locale first."]}


def test_delete_removes_an_unused_template_and_refuses_a_used_one(api: Any, client_tenant: Any) -> None:
    template_id = api.post(URL, NEW, format="json").json()["id"]
    assert api.delete(f"{URL}/{template_id}").status_code == 204
    assert not Template.objects.filter(id=template_id).exists()

    TemplateFactory(client=client_tenant, key="welcome")
    sent = api.post("/api/v1/notifications", {"template_id": "welcome", "variables": {"name": "A"},
                                              "recipients": [{"id": "u", "email": "u@example.com"}]},
                    format="json")
    assert sent.status_code == 202
    refused = api.delete(f"{URL}/welcome")
    assert refused.status_code == 409
    assert error(refused)["code"] == "template_in_use"


# --- versions, publish, rollback ----------------------------------------------------------

def test_new_version_for_a_locale_is_numbered_and_published_by_default(api: Any) -> None:
    api.post(URL, NEW, format="json")
    response = api.post(f"{URL}/order_shipped/versions",
                        {"locale": "fr_ca", "subject": "Commande {{ orderId }}", "text_body": "x"},
                        format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["number"], body["locale"], body["status"]) == (1, "fr-CA", "active")
    assert body["required_variables"] == ["orderId"]
    assert body["published_at"] is not None

    draft = api.post(f"{URL}/order_shipped/versions", {"subject": "v2", "publish": False},
                     format="json").json()
    assert (draft["number"], draft["locale"], draft["status"], draft["published_at"]) == (
        2, "en", "draft", None)


def test_a_version_with_a_syntax_error_is_a_422_naming_the_part(api: Any) -> None:
    api.post(URL, NEW, format="json")
    response = api.post(f"{URL}/order_shipped/versions",
                        {"subject": "ok", "push_data": {"url": "{{ oops"}}, format="json")
    assert response.status_code == 422
    assert list(error(response)["fields"]) == ["push_data.url"]


def test_publish_a_draft_then_roll_back_through_the_publish_endpoint(api: Any, client_tenant: Any) -> None:
    api.post(URL, NEW, format="json")
    api.post(f"{URL}/order_shipped/versions", {"subject": "v2 {{ name }}", "publish": False},
             format="json")

    published = api.post(f"{URL}/order_shipped/versions/2/publish")
    assert published.status_code == 200, published.json()
    assert (published.json()["version"], published.json()["locale"]) == (2, "en")
    assert published.json()["published_by"].startswith("api_key:")
    template = Template.objects.get(client=client_tenant, key="order_shipped")
    assert template.active_version is not None and template.active_version.version == 2

    rolled_back = api.post(f"{URL}/order_shipped/versions/1/publish?locale=EN")
    assert rolled_back.status_code == 200
    template.refresh_from_db()
    assert template.active_version is not None and template.active_version.version == 1
    statuses = {v["number"]: v["status"] for v in api.get(f"{URL}/order_shipped/versions").json()["results"]}
    assert statuses == {1: "active", 2: "inactive"}

    missing = api.post(f"{URL}/order_shipped/versions/9/publish")
    assert missing.status_code == 404
    assert api.post(f"{URL}/order_shipped/versions/1/publish?locale=fr").status_code == 404


def test_versions_list_paginates_and_filters_by_locale(api: Any, client_tenant: Any) -> None:
    template = TemplateFactory(client=client_tenant, key="many")
    for i in range(4):
        template_version_create(template=template, subject=f"en {i}")
    template_version_create(template=template, locale="fr", subject="fr")

    first = api.get(f"{URL}/many/versions", {"page_size": 3}).json()
    assert len(first["results"]) == 3 and first["next"]
    rest = api.get(first["next"]).json()
    numbers = [(v["locale"], v["number"]) for v in first["results"] + rest["results"]]
    assert numbers == [("fr", 1), ("en", 5), ("en", 4), ("en", 3), ("en", 2), ("en", 1)]
    assert [v["locale"] for v in api.get(f"{URL}/many/versions?locale=FR").json()["results"]] == ["fr"]


# --- preview ------------------------------------------------------------------------------

def test_preview_renders_every_channel(api: Any) -> None:
    api.post(URL, NEW, format="json")
    variables = {"name": "<Ada>", "orderId": "O-1"}
    response = api.get(f"{URL}/order_shipped/preview", {"variables": json.dumps(variables)})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["version"]["number"] == 1 and body["version"]["locale"] == "en"
    assert body["channels"] == {
        # Jinja drops the source's final newline when rendering (as the send path does).
        "email": {"subject": "Order O-1 shipped", "text": "Hi <Ada>", "html": "<p>Hi &lt;Ada&gt;</p>"},
        "sms": {"body": "Order O-1 shipped"},
    }
    assert api.post(f"{URL}/order_shipped/preview", {"variables": variables},
                    format="json").json() == body


def test_preview_picks_the_locale_with_fallback_or_a_given_version(api: Any) -> None:
    api.post(URL, NEW, format="json")
    api.post(f"{URL}/order_shipped/versions", {"locale": "fr", "subject": "Commande {{ orderId }}",
                                               "text_body": "FR"}, format="json")
    api.post(f"{URL}/order_shipped/versions", {"subject": "Draft {{ orderId }}", "text_body": "D",
                                               "publish": False}, format="json")
    variables = {"variables": {"orderId": "7", "name": "x"}}

    fr = api.post(f"{URL}/order_shipped/preview", {**variables, "locale": "fr-CA"}, format="json").json()
    assert (fr["version"]["locale"], fr["channels"]["email"]["subject"]) == ("fr", "Commande 7")
    draft = api.post(f"{URL}/order_shipped/preview", {**variables, "version": 2}, format="json").json()
    assert draft["channels"]["email"]["subject"] == "Draft 7"


def test_preview_names_missing_variables_and_bad_json(api: Any) -> None:
    api.post(URL, NEW, format="json")
    missing = api.get(f"{URL}/order_shipped/preview", {"variables": '{"name": "A"}'})
    assert missing.status_code == 422
    assert error(missing)["code"] == "missing_variables"
    assert error(missing)["fields"] == {"variables.orderId": ["Required by the template."]}

    bad = api.get(f"{URL}/order_shipped/preview", {"variables": "{not json"})
    assert bad.status_code == 400
    assert list(error(bad)["fields"]) == ["variables"]


def test_preview_uses_the_templates_sample_variables(api: Any) -> None:
    api.post(URL, {**NEW, "sample_variables": {"name": "Sam", "orderId": "S-1"}}, format="json")
    body = api.get(f"{URL}/order_shipped/preview").json()
    assert body["channels"]["sms"] == {"body": "Order S-1 shipped"}


def test_preview_reports_a_render_error_with_its_part(api: Any) -> None:
    api.post(URL, {**NEW, "key": "deep", "version": {"subject": "{{ order.total }}",
                                                            "text_body": "x"}}, format="json")
    response = api.get(f"{URL}/deep/preview", {"variables": '{"order": "flat string"}'})
    assert response.status_code == 422
    assert error(response)["code"] == "render_error"
    assert list(error(response)["fields"]) == ["email.subject"]


# --- list and search ----------------------------------------------------------------------

def test_search_matches_key_or_name_case_insensitively_and_channel(api: Any, client_tenant: Any) -> None:
    TemplateFactory(client=client_tenant, key="order_shipped", name="Parcel on its way", channels=["email"])
    TemplateFactory(client=client_tenant, key="otp", name="ORDER code", channels=["sms"])
    TemplateFactory(client=client_tenant, key="welcome", name="Welcome", channels=["email", "push"])
    TemplateFactory(key="order_other_client")

    def keys(**params: str) -> set[str]:
        response = api.get(f"{URL}/search", params)
        assert response.status_code == 200, response.json()
        return {t["key"] for t in response.json()["results"]}

    assert keys(name="order") == {"order_shipped", "otp"}
    assert keys(name="PARCEL") == {"order_shipped"}
    assert keys(channel="email") == {"order_shipped", "welcome"}
    assert keys(name="order", channel="sms") == {"otp"}
    bad = api.get(f"{URL}/search", {"channel": "fax"})
    assert bad.status_code == 400 and list(error(bad)["fields"]) == ["channel"]


def test_list_paginates_with_a_cursor_and_does_not_query_per_row(api: Any, client_tenant: Any) -> None:
    def make(count: int) -> None:
        for _ in range(count):
            template = TemplateFactory(client=client_tenant)
            template_version_create(template=template, locale="fr", subject="fr")

    make(2)
    with CaptureQueriesContext(connection) as few:
        assert api.get(URL).status_code == 200
    make(20)
    with CaptureQueriesContext(connection) as many:
        page = api.get(URL, {"page_size": 10}).json()
    assert len(many.captured_queries) <= len(few.captured_queries)
    assert len(page["results"]) == 10 and page["next"]
    assert {a["locale"] for a in page["results"][0]["active_versions"]} == {"en", "fr"}
    seen = {t["id"] for t in page["results"]}
    while page["next"]:
        page = api.get(page["next"]).json()
        seen |= {t["id"] for t in page["results"]}
    assert len(seen) == 22


def test_versions_list_does_not_query_per_row(api: Any, client_tenant: Any) -> None:
    template = TemplateFactory(client=client_tenant, key="q")
    with CaptureQueriesContext(connection) as few:
        api.get(f"{URL}/q/versions")
    for i in range(15):
        template_version_create(template=template, subject=f"{i}", publish=i % 2 == 0)
    with CaptureQueriesContext(connection) as many:
        assert len(api.get(f"{URL}/q/versions").json()["results"]) == 16
    assert len(many.captured_queries) <= len(few.captured_queries)


def test_the_openapi_schema_documents_every_template_operation(api: Any) -> None:
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    operations = {(path, method) for path, item in schema["paths"].items() for method in item
                  if path.startswith("/api/v1/templates")}
    assert operations >= {
        ("/api/v1/templates", "get"), ("/api/v1/templates", "post"),
        ("/api/v1/templates/search", "get"),
        ("/api/v1/templates/{template_ref}", "get"), ("/api/v1/templates/{template_ref}", "put"),
        ("/api/v1/templates/{template_ref}", "delete"),
        ("/api/v1/templates/{template_ref}/versions", "get"),
        ("/api/v1/templates/{template_ref}/versions", "post"),
        ("/api/v1/templates/{template_ref}/versions/{number}/publish", "post"),
        ("/api/v1/templates/{template_ref}/preview", "get"),
        ("/api/v1/templates/{template_ref}/preview", "post"),
    }
    assert TemplateVersion.objects.count() == 0


# --- In-app content (docs/inbox.md) ----------------------------------------------------------

def test_a_version_takes_in_app_content(api: Any) -> None:
    api.post("/api/v1/templates", {"key": "welcome", "name": "Welcome",
                                   "channels": ["in_app"]}, format="json")
    response = api.post("/api/v1/templates/welcome/versions", {
        "in_app_title": "Welcome, {{ name }}", "in_app_body": "Start here.",
        "in_app_action_url": "https://app.example.com/start/{{ code }}",
        "in_app_data": {"kind": "welcome", "weight": 2}}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["in_app_title"] == "Welcome, {{ name }}"
    assert body["in_app_data"] == {"kind": "welcome", "weight": 2}
    assert body["required_variables"] == ["code", "name"]
    preview = api.post("/api/v1/templates/welcome/preview",
                       {"variables": {"name": "Ada", "code": "7"}}, format="json").json()
    assert preview["channels"]["in_app"] == {
        "title": "Welcome, Ada", "body": "Start here.",
        "action_url": "https://app.example.com/start/7", "data": {"kind": "welcome", "weight": 2}}


@pytest.mark.parametrize(("content", "status", "field"), [
    ({"in_app_action_url": "javascript:alert(1)"}, 422, "in_app_action_url"),
    ({"in_app_action_url": "//evil.example/x"}, 422, "in_app_action_url"),
    ({"in_app_title": "{{ name"}, 422, "in_app_title"),
    ({"in_app_data": {"x": "{{ a.__class__ }}"}}, 422, "in_app_data.x"),
    ({"in_app_data": ["not", "an", "object"]}, 400, "in_app_data"),
    ({"in_app_data": {"big": "x" * 5000}}, 422, "in_app_data"),
    ({"in_app_title": "t" * 501}, 400, "in_app_title"),
])
def test_invalid_in_app_content_is_refused_naming_the_field(
        api: Any, content: dict[str, Any], status: int, field: str) -> None:
    api.post("/api/v1/templates", {"key": "welcome", "name": "Welcome",
                                   "channels": ["in_app"]}, format="json")
    response = api.post("/api/v1/templates/welcome/versions",
                        {"in_app_body": "Hello", **content}, format="json")

    assert response.status_code == status, response.json()
    assert field in response.json()["error"]["fields"], response.json()
    assert TemplateVersion.objects.count() == 0
