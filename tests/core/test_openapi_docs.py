"""The API reference tells a developer what each operation needs and shows it: the scope of
every operation, an example for every request body, and Swagger UI / ReDoc that load from our
own static files (no CDN)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client as DjangoClient
from jsonschema import Draft7Validator

from apps.clients.models import Scope

pytestmark = pytest.mark.django_db

WRITES = {"post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def schema(django_db_blocker: Any) -> dict[str, Any]:
    with django_db_blocker.unblock():
        response = DjangoClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return dict(response.json())


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in schema["paths"].items()
            for method, op in ops.items() if method in WRITES | {"get"}]


def _api_key(op: dict[str, Any]) -> bool:
    return any("ApiKey" in requirement for requirement in op.get("security", []))


def test_every_api_key_operation_names_the_scope_it_needs(schema: dict[str, Any]) -> None:
    keyed = [(m, p, op) for m, p, op in operations(schema) if _api_key(op)]
    assert len(keyed) > 50
    for method, path, op in keyed:
        scopes = op.get("x-required-scopes")
        assert scopes and set(scopes) <= set(Scope.values), (method, path)
        assert "**Scope:** " + " or ".join(f"`{s}`" for s in scopes) in op["description"]
    ops = {(m, p): op["x-required-scopes"] for m, p, op in keyed}
    assert ops[("post", "/api/v1/notifications")] == ["send"]
    assert ops[("get", "/api/v1/notifications")] == ["read"]
    assert ops[("post", "/api/v1/templates")] == ["templates"]
    assert ops[("post", "/api/v1/webhooks/{endpoint_id}/rotate-secret")] == ["webhooks"]
    assert ops[("post", "/api/v1/admin/retry-failed")] == ["admin"]


def test_an_operation_without_a_key_claims_no_scope(schema: dict[str, Any]) -> None:
    assert "x-required-scopes" not in schema["paths"]["/api/v1/health"]["get"]


def test_the_inbox_operations_take_a_recipient_token_and_no_scope(schema: dict[str, Any]) -> None:
    inbox = [(m, p, op) for m, p, op in operations(schema) if p.startswith("/api/v1/inbox/")]
    assert len(inbox) == 8
    for method, path, op in inbox:
        assert op["security"] == [{"RecipientToken": []}], (method, path)
        assert "x-required-scopes" not in op, (method, path)
        assert any(p["name"] == "token" for p in op.get("parameters", [])), (method, path)
    assert schema["components"]["securitySchemes"]["RecipientToken"]["bearerFormat"] == "JWT"
    token = schema["paths"]["/api/v1/recipients/{external_id}/inbox-token"]["post"]
    assert token["x-required-scopes"] == ["send", "read"]


def test_every_request_body_has_an_example_that_its_schema_accepts(
        schema: dict[str, Any]) -> None:
    bodies = [(m, p, op["requestBody"]) for m, p, op in operations(schema) if "requestBody" in op]
    assert len(bodies) >= 20
    for method, path, body in bodies:
        for media in body["content"].values():
            examples = [e["value"] for e in media.get("examples", {}).values()]
            examples += [media["example"]] if "example" in media else []
            assert examples, f"{method.upper()} {path} has no request example"
            validator = Draft7Validator({**media["schema"], "components": schema["components"]})
            for example in examples:
                problems = [e.message for e in validator.iter_errors(example)]
                assert not problems, (method, path, problems)


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_swagger_ui_and_redoc_load_only_our_static_files(url: str) -> None:
    response = DjangoClient().get(url)

    assert response.status_code == 200
    html = response.content.decode()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "a CDN URL in the page"
    assets = re.findall(r"""/static/(drf_spectacular_sidecar/[^"'\s]+)""", html)
    assert any(a.endswith(".js") for a in assets)
    for asset in assets:
        assert finders.find(asset), f"{asset} is not among the static files"
