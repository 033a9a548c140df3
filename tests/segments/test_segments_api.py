"""Segments over the API: CRUD by id or key, counts, recipients, errors with paths, tenants."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.segments.models import Segment
from tests.factories import ClientFactory, RecipientFactory, api_key_for

pytestmark = pytest.mark.django_db

PRO = {"all": [{"attribute": "plan", "op": "equals", "value": "pro"}]}


def create(api: APIClient, key: str = "pro_users", definition: Any = None) -> Any:
    return api.post("/api/v1/segments", {"name": "Pro users", "key": key,
                                         "definition": definition or PRO}, format="json")


def test_create_read_update_delete_by_id_and_key(api: APIClient, client_tenant: Any) -> None:
    response = create(api)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["key"] == "pro_users" and body["definition"] == PRO

    assert api.get(f"/api/v1/segments/{body['id']}").json()["id"] == body["id"]
    assert api.get("/api/v1/segments/pro_users").json()["id"] == body["id"]
    assert [s["key"] for s in api.get("/api/v1/segments").json()["results"]] == ["pro_users"]

    changed = api.put("/api/v1/segments/pro_users", {"name": "Paying"}, format="json")
    assert changed.status_code == 200
    assert changed.json()["name"] == "Paying" and changed.json()["definition"] == PRO

    assert api.delete(f"/api/v1/segments/{body['id']}").status_code == 204
    assert api.get(f"/api/v1/segments/{body['id']}").status_code == 404


def test_an_invalid_definition_answers_400_with_the_path(api: APIClient) -> None:
    response = create(api, definition={"all": [
        {"attribute": "plan", "op": "equals", "value": "pro"},
        {"attribute": "age", "op": "between", "value": [1, 2]},
    ]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == ["definition.all[1].op"]
    assert not Segment.objects.exists()

    update = api.put("/api/v1/segments/x", {"definition": {"any": []}}, format="json")
    assert update.status_code == 404  # unknown segment first
    create(api)
    update = api.put("/api/v1/segments/pro_users", {"definition": {"any": []}}, format="json")
    assert update.status_code == 400
    assert "definition.any" in update.json()["error"]["fields"]


def test_a_key_is_unique_per_client(api: APIClient) -> None:
    assert create(api).status_code == 201
    duplicate = create(api)
    assert duplicate.status_code == 409  # a conflict with what exists, as for template keys
    assert duplicate.json()["error"]["code"] == "segment_key_taken"
    assert "key" in duplicate.json()["error"]["fields"]
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(ClientFactory())}")
    assert create(other).status_code == 201  # another client may use the same key


def test_count_and_recipients_list_the_matching_recipients_now(
    api: APIClient, client_tenant: Any
) -> None:
    for i in range(5):
        RecipientFactory(client=client_tenant, external_id=f"pro{i}", attributes={"plan": "pro"})
    RecipientFactory(client=client_tenant, external_id="free", attributes={"plan": "free"})
    RecipientFactory(client=ClientFactory(), external_id="elsewhere", attributes={"plan": "pro"})
    segment_id = create(api).json()["id"]

    assert api.get(f"/api/v1/segments/{segment_id}/count").json()["count"] == 5
    first = api.get(f"/api/v1/segments/{segment_id}/recipients", {"page_size": 3}).json()
    assert [r["id"] for r in first["results"]] == ["pro0", "pro1", "pro2"]
    second = api.get(first["next"]).json()
    assert [r["id"] for r in second["results"]] == ["pro3", "pro4"]
    assert second["next"] is None

    RecipientFactory(client=client_tenant, external_id="pro5", attributes={"plan": "pro"})
    assert api.get("/api/v1/segments/pro_users/count").json()["count"] == 6


def test_another_clients_segment_is_not_found(api: APIClient) -> None:
    theirs = Segment.objects.create(client=ClientFactory(), name="x", key="theirs",
                                    definition=PRO)
    for path in ("", "/count", "/recipients"):
        assert api.get(f"/api/v1/segments/{theirs.id}{path}").status_code == 404
    assert api.get("/api/v1/segments/theirs").status_code == 404
    assert api.put(f"/api/v1/segments/{theirs.id}", {"name": "mine"},
                   format="json").status_code == 404
    assert api.delete(f"/api/v1/segments/{theirs.id}").status_code == 404
    assert api.post(f"/api/v1/segments/{theirs.id}/send", {"template_id": "welcome"},
                    format="json").status_code == 404
    assert api.get("/api/v1/segments").json()["results"] == []
    assert Segment.objects.filter(id=theirs.id).exists()


def test_segments_need_an_api_key() -> None:
    assert APIClient().get("/api/v1/segments").status_code == 401
