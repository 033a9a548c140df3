"""Ids and bodies no client should send still get a 4xx in the error format, never a 500:
NUL characters (PostgreSQL text cannot hold them), over-long ids, quoting and path tricks.
Every route with a text id in its path is tried (from the URL resolver)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client as DjangoClient
from django.test import override_settings

from .support import Route, World, two_worlds, unchanged
from .test_tenant_isolation import BODIES, OBJECT_ROUTES, ROUTES, _values

HOSTILE_IDS = ["%00", "a%00b", "x" * 300, "%25", "'%20OR%201=1--", "%F0%9F%92%A9", "..", "%C0%AF"]


@pytest.mark.django_db
def test_hostile_ids_in_paths_are_4xx_never_500() -> None:
    _, beta = two_worlds()
    beta.api.raise_request_exception = False
    wrong = []
    for route in OBJECT_ROUTES:
        text_params = [p for p in route.params if f"<{p}>" in route.template
                       or f"<str:{p}>" in route.template]
        for param in text_params:
            for hostile in HOSTILE_IDS:
                values = {**_values(route, beta), param: hostile}
                for method in route.methods:
                    make = BODIES.get((route.name, method))
                    response = getattr(beta.api, method.lower())(
                        route.url(values), make(beta, beta) if make else None, format="json")
                    upsert = (route.name, method) == ("recipient-detail", "PUT") and \
                        "%00" not in hostile and len(hostile) <= 200
                    if upsert:  # any other text is a valid id of one's own
                        ok = response.status_code in (200, 201)
                    elif route.name in ("recipient-devices", "recipient-export", "recipient-erase") \
                            and "%00" not in hostile \
                            and len(hostile) <= 200:
                        ok = response.status_code < 500  # the upsert above created it
                    else:
                        ok = response.status_code in (400, 404) and "error" in response.json()
                    if not ok:
                        wrong.append(f"{method} {route.url(values)[:90]}: {response.status_code}")
    assert wrong == []


def _names(fields: dict[str, Any], field: str) -> bool:
    """`fields` names `field` or something inside it (`variables.name`, `recipients[0].id`)."""
    return any(key == field or key.startswith((f"{field}.", f"{field}[")) for key in fields)


def _send(**overrides: Any) -> dict[str, Any]:
    return {"recipients": ["beta_user"], "template_id": "beta_welcome",
            "variables": {"name": "x"}, "channels": ["email"], **overrides}


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "body", "field"), [
    ("notifications", _send(recipients=["\x00"]), "recipients[0]"),
    ("notifications", _send(recipients=[{"id": "a\x00"}]), "recipients[0].id"),
    ("notifications", _send(variables={"name": "x\x00"}), "variables"),
    ("notifications", _send(metadata={"a\x00": "b"}), "metadata"),
    ("notifications", _send(metadata={"a": ["b", {"c": "\x00"}]}), "metadata"),
    ("notifications/bulk", {"notifications": [_send(variables={"name": "\x00"})]},
     "notifications[0].variables"),
    ("segments", {"name": "a", "key": "k", "definition": {
        "all": [{"attribute": "plan", "op": "equals", "value": "\x00"}]}}, "definition"),
    ("segments", {"name": "a\x00", "key": "k", "definition": {"all": []}}, "name"),
    ("templates", {"key": "k", "name": "n", "channels": ["email"],
                   "sample_variables": {"x": "\x00"}}, "sample_variables"),
    ("schedules", {"name": "n", "template_id": "beta_welcome", "recipient_ids": ["beta_user"],
                   "minute": "0", "hour": "9", "variables": {"name": "\x00"}}, "variables"),
    ("webhooks", {"url": "https://a.example.com/", "description": "\x00"}, "description"),
])
def test_nul_characters_in_bodies_are_400_naming_the_field(
    path: str, body: dict[str, Any], field: str
) -> None:
    _, beta = two_worlds()
    beta.api.raise_request_exception = False

    response = beta.api.post(f"/api/v1/{path}", body, format="json")

    assert response.status_code == 400, response.content
    assert _names(response.json()["error"]["fields"], field), response.json()


@pytest.mark.django_db
def test_nul_characters_in_recipient_attributes_and_query_strings_are_400() -> None:
    _, beta = two_worlds()
    beta.api.raise_request_exception = False

    put = beta.api.put("/api/v1/recipients/beta_user", {"attributes": {"k": "\x00"}},
                       format="json")
    listed = beta.api.get("/api/v1/notifications", {"recipient": "\x00"})
    searched = beta.api.get("/api/v1/audit/logs", {"action": "a\x00"})

    assert put.status_code == 400 and _names(put.json()["error"]["fields"], "attributes")
    assert listed.status_code == searched.status_code == 400


# --- Hostile bodies on every write endpoint ---------------------------------------------------
#
# Each body below reaches every route under /api/v1/ (from the URL resolver) with every write
# method its view has, the API routes with beta's own ids filled in (so only the body can be at
# fault) and the provider callbacks as they are. The answer is the status given, in the error
# format, and beta's rows are exactly what they were: a refused request writes nothing, even on
# an endpoint that ignores its body.

def _nested(depth: int) -> bytes:
    return b'{"variables": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"


HOSTILE_BODIES: dict[str, tuple[bytes, int, str]] = {
    # name: (raw body, status, code)
    "lone surrogate in a value": (b'{"variables": {"name": "\\ud800"}, "name": "x"}', 400, "invalid"),
    "lone low surrogate in a list": (b'{"recipients": ["ok", "\\udfff"]}', 400, "invalid"),
    "lone surrogate in a key": (b'{"metadata": {"\\udc00": "v"}}', 400, "invalid"),
    "surrogate pair cut by text": (b'{"attributes": {"k": "\\ud83dx\\ude00"}}', 400, "invalid"),
    "NUL escape": (b'{"name": "a\\u0000b"}', 400, "invalid"),
    "nested 5,000 deep": (b"[" * 5000 + b"]" * 5000, 400, "malformed_request"),
    "objects nested 5,000 deep": (_nested(5000), 400, "malformed_request"),
    "nested one level past the cap": (_nested(64), 400, "malformed_request"),
    "not UTF-8": (b'{"name": "caf\xe9"}', 400, "malformed_request"),
    "UTF-16 bytes": ('{"name": "x"}'.encode("utf-16"), 400, "malformed_request"),
    "NaN": (b'{"amount": NaN}', 400, "malformed_request"),
}


def _write_routes() -> list[tuple[Route, str]]:
    routes = [r for r in ROUTES if not r.params or r in OBJECT_ROUTES]
    return [(r, m) for r in routes for m in r.methods if m in ("POST", "PUT", "PATCH", "DELETE")]


WRITE_ROUTES = _write_routes()


def test_the_hostile_corpus_reaches_the_write_endpoints() -> None:
    names = {route.name for route, _ in WRITE_ROUTES}
    assert {"notifications", "notifications-bulk", "templates", "template-versions",
            "recipient-detail", "segments", "schedules", "webhook-endpoints", "webhook-sendgrid",
            "webhook-twilio"} <= names, sorted(names)


def _check(beta: World, raw: bytes, status: int, code: str, *,
           headers: dict[str, str] | None = None) -> list[str]:
    wrong = []
    for route, method in WRITE_ROUTES:
        url = route.url(_values(route, beta)) if route.params else route.url({})
        response = beta.api.generic(method, url, raw, content_type="application/json",
                                    **(headers or {}))
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            error = {}
        if response.status_code != status or error.get("code") != code or "fields" not in error:
            wrong.append(f"{method} {url}: {response.status_code} {response.content[:160]!r}")
    return wrong


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_hostile_json_bodies_are_400_on_every_write_endpoint_and_write_nothing(name: str) -> None:
    _, beta = two_worlds()
    beta.api.raise_request_exception = False
    raw, status, code = HOSTILE_BODIES[name]
    changed = unchanged(beta.client)

    wrong = _check(beta, raw, status, code)

    assert wrong == []
    assert changed() == []


@pytest.mark.django_db
@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=4096)
def test_a_body_over_the_size_limit_is_413_on_every_write_endpoint_and_writes_nothing() -> None:
    _, beta = two_worlds()
    beta.api.raise_request_exception = False
    changed = unchanged(beta.client)
    raw = json.dumps({"name": "x", "metadata": {"pad": "p" * 5000}}).encode()

    wrong = _check(beta, raw, 413, "request_too_large")

    assert wrong == []
    assert changed() == []


@pytest.mark.django_db
@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=4096)
def test_an_oversized_form_post_to_the_admin_is_413_json() -> None:
    response = DjangoClient().post("/admin/login/", {"username": "u" * 5000, "password": "p"})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "field"), [
    (_send(variables={"name": "\ud800"}), "variables.name"),
    (_send(recipients=[{"id": "a\udc00", "email": "a@example.com"}]), "recipients[0].id"),
    (_send(metadata={"\ud800key": "v"}), "metadata.\\ud800key"),
    (_send(recipients=["beta_user", "x\ud83d"]), "recipients[1]"),
])
def test_a_lone_surrogate_names_the_path_to_it(body: dict[str, Any], field: str) -> None:
    _, beta = two_worlds()
    beta.api.raise_request_exception = False
    raw = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as "\ud800"

    response = beta.api.post("/api/v1/notifications", raw, content_type="application/json")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid"
    assert field in response.json()["error"]["fields"], response.json()


@pytest.mark.django_db
def test_a_lone_surrogate_in_recipient_attributes_is_400_and_a_real_pair_is_kept() -> None:
    _, beta = two_worlds()
    beta.api.raise_request_exception = False

    lone = beta.api.put("/api/v1/recipients/beta_user",
                        b'{"attributes": {"nick": "\\ud83d"}}', content_type="application/json")
    pair = beta.api.put("/api/v1/recipients/beta_user",
                        b'{"attributes": {"nick": "\\ud83d\\ude00"}}', content_type="application/json")

    assert lone.status_code == 400 and "attributes.nick" in lone.json()["error"]["fields"]
    assert pair.status_code == 200, pair.content
    assert pair.json()["attributes"]["nick"] == "\U0001f600"


@pytest.mark.django_db
def test_json_at_the_depth_cap_is_accepted() -> None:
    _, beta = two_worlds()
    value: Any = "deep"
    for _ in range(60):
        value = {"a": value}

    response = beta.api.put("/api/v1/recipients/beta_user", {"attributes": {"nest": value}},
                            format="json")

    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_a_nul_in_a_provider_callback_form_is_400_json() -> None:
    response = DjangoClient().post("/api/v1/webhooks/twilio",
                                   "MessageSid=SM%00&MessageStatus=delivered",
                                   content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["application/json; charset=latin-1",
                                          "application/json; charset=utf-99"])
def test_a_declared_charset_does_not_change_that_json_is_utf8(content_type: str) -> None:
    _, beta = two_worlds()
    beta.api.raise_request_exception = False

    latin = beta.api.put("/api/v1/recipients/beta_user", b'{"attributes": {"k": "caf\xe9"}}',
                         content_type=content_type)
    utf8 = beta.api.put("/api/v1/recipients/beta_user",
                        '{"attributes": {"k": "caf\u00e9"}}'.encode(), content_type=content_type)

    assert latin.status_code == 400 and latin.json()["error"]["code"] == "malformed_request"
    assert utf8.status_code == 200 and utf8.json()["attributes"]["k"] == "caf\u00e9"


@pytest.mark.django_db
def test_djangos_own_400_is_json_under_the_api() -> None:
    """Too many form fields for a provider callback: Django refuses it before any view."""
    body = "&".join(f"f{i}=x" for i in range(1500))

    response = DjangoClient().post("/api/v1/webhooks/twilio", body,
                                   content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
