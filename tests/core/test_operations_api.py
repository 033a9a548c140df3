from __future__ import annotations

from typing import Any

import pytest


def test_health_needs_no_key(client: Any) -> None:
    assert client.get("/api/v1/health").json() == {"status": "ok"}


@pytest.mark.django_db
def test_ready_checks_database_and_broker(client: Any) -> None:
    response = client.get("/api/v1/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_ready_is_503_when_the_broker_is_unreachable(client: Any, settings: Any) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/api/v1/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "unavailable"


@pytest.mark.django_db
def test_openapi_schema_and_docs_are_served(client: Any) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/v1/notifications", "/api/v1/notifications/{notification_id}",
                 "/api/v1/notifications/{notification_id}/status",
                 "/api/v1/recipients/{external_id}", "/api/v1/health", "/api/v1/ready"):
        assert path in paths
    assert client.get("/api/docs/").status_code == 200


def test_unknown_api_path_is_json_404(client: Any) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
