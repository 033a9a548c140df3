"""Every endpoint of the client platform is in the OpenAPI document, with examples."""

from __future__ import annotations

from typing import Any

import pytest

NEW = {
    ("/api/v1/notifications/bulk", "post"),
    ("/api/v1/notifications/{notification_id}", "delete"),
    ("/api/v1/metrics/delivery-rates", "get"),
    ("/api/v1/metrics/channel-performance", "get"),
    ("/api/v1/metrics/system-status", "get"),
    ("/api/v1/admin/queue-status", "get"),
}


def _has_example(node: Any) -> bool:
    if isinstance(node, dict):
        return "examples" in node or "example" in node or any(_has_example(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_example(v) for v in node)
    return False


@pytest.mark.django_db
def test_new_endpoints_are_documented_with_examples(client: Any) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path, method in NEW:
        operation = schema["paths"][path][method]
        assert operation.get("description"), (path, method)
        if method != "delete":
            assert _has_example(operation["responses"]), (path, method)
    bulk = schema["paths"]["/api/v1/notifications/bulk"]["post"]
    assert _has_example(bulk["requestBody"])
    assert {"202", "400", "409", "422", "429"} <= set(bulk["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in bulk["parameters"])
    assert {"204", "404", "409"} <= set(
        schema["paths"]["/api/v1/notifications/{notification_id}"]["delete"]["responses"])
