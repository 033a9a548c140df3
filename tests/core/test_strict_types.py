"""JSON bodies are read with their JSON types (apps/core/fields.py StrictTypesMixin), as the
OpenAPI schema states them: DRF alone would take 123 for a string, false for a UUID and "yes"
for a boolean. Query strings: page_size is a whole number from 1; an empty filter is no filter."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.segments.models import Segment
from apps.webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db


def test_a_number_for_a_string_is_400_naming_the_field(api: APIClient) -> None:
    response = api.post("/api/v1/segments", {"name": "Pro", "key": 123, "definition": {}},
                        format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"key": ["Not a valid string."]}
    assert not Segment.objects.exists()


def test_a_number_for_an_optional_string_is_400_too(api: APIClient) -> None:
    response = api.post("/api/v1/webhooks", {"url": "https://hooks.example.com/x",
                                             "description": 7}, format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["description"]
    assert not WebhookEndpoint.objects.exists()


def test_false_is_not_a_uuid(api: APIClient) -> None:
    response = api.post("/api/v1/admin/retry-failed", {"delivery_ids": ["3f1d2a9e-2c2b-4c1a-9a43-"
                                                                       "6a1f0c1d2e3f", False]},
                        format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["delivery_ids[1]"]


def test_yes_is_not_a_boolean(api: APIClient) -> None:
    response = api.patch("/api/v1/preferences/someone/channels/sms", {"enabled": "yes"},
                         format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["enabled"]


@pytest.mark.parametrize("page_size", ["0", "-1", "ten", "1.5", "null"])
def test_a_page_size_that_is_not_a_whole_number_from_1_is_400(api: APIClient,
                                                              page_size: str) -> None:
    for url in ("/api/v1/templates", "/api/v1/notifications"):
        response = api.get(url, {"page_size": page_size})
        assert response.status_code == 400, url
        assert list(response.json()["error"]["fields"]) == ["page_size"], url


def test_an_empty_page_size_is_the_default_and_a_big_one_is_capped(
    api: APIClient, email_template: Any
) -> None:
    assert api.get("/api/v1/templates", {"page_size": ""}).status_code == 200
    assert api.get("/api/v1/templates", {"page_size": "100000"}).status_code == 200
