"""Ids and bodies no client should send still get a 4xx in the error format, never a 500:
NUL characters (PostgreSQL text cannot hold them), over-long ids, quoting and path tricks.
Every route with a text id in its path is tried (from the URL resolver)."""

from __future__ import annotations

from typing import Any

import pytest

from .support import two_worlds
from .test_tenant_isolation import BODIES, OBJECT_ROUTES, _values

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
    assert field in response.json()["error"]["fields"], response.json()


@pytest.mark.django_db
def test_nul_characters_in_recipient_attributes_and_query_strings_are_400() -> None:
    _, beta = two_worlds()
    beta.api.raise_request_exception = False

    put = beta.api.put("/api/v1/recipients/beta_user", {"attributes": {"k": "\x00"}},
                       format="json")
    listed = beta.api.get("/api/v1/notifications", {"recipient": "\x00"})
    searched = beta.api.get("/api/v1/audit/logs", {"action": "a\x00"})

    assert put.status_code == 400 and "attributes" in put.json()["error"]["fields"]
    assert listed.status_code == searched.status_code == 400
