from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from apps.recipients.models import Recipient
from tests.factories import ClientFactory, RecipientFactory

pytestmark = pytest.mark.django_db


def test_put_creates_then_updates_keeping_fields_left_out(api: Any, client_tenant: Any) -> None:
    created = api.put("/api/v1/recipients/user_1", {"email": "a@example.com", "phone": "+14155550100",
                                                     "timezone": "Europe/Paris"}, format="json")
    assert created.status_code == 201
    updated = api.put("/api/v1/recipients/user_1", {"email": "b@example.com"}, format="json")
    assert updated.status_code == 200
    assert updated.json()["email"] == "b@example.com"
    assert updated.json()["phone"] == "+14155550100"
    assert Recipient.objects.get(client=client_tenant, external_id="user_1").timezone == "Europe/Paris"


@pytest.mark.parametrize(
    ("body", "field"),
    [({"email": "nope"}, "email"), ({"phone": "555-1234"}, "phone"),
     ({"timezone": "Mars/Base"}, "timezone"), ({"attributes": [1]}, "attributes")],
)
def test_put_rejects_bad_fields(api: Any, body: dict[str, Any], field: str) -> None:
    response = api.put("/api/v1/recipients/user_1", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert Recipient.objects.count() == 0


def test_another_clients_recipient_is_404_and_untouched(api: Any) -> None:
    theirs = RecipientFactory(client=ClientFactory(), external_id="shared_id", email="x@example.com")
    assert api.get("/api/v1/recipients/shared_id").status_code == 404
    api.put("/api/v1/recipients/shared_id", {"email": "mine@example.com"}, format="json")
    theirs.refresh_from_db()
    assert theirs.email == "x@example.com"
    assert Recipient.objects.filter(external_id="shared_id").count() == 2


def test_put_on_an_existing_recipient_answers_with_its_original_created_at(api: Any) -> None:
    created = api.put("/api/v1/recipients/u_created", {"email": "c@example.com"}, format="json")
    Recipient.objects.filter(external_id="u_created").update(
        created_at=datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC))

    updated = api.put("/api/v1/recipients/u_created", {"locale": "fr"}, format="json")
    fetched = api.get("/api/v1/recipients/u_created")

    assert created.status_code == 201 and updated.status_code == 200
    assert updated.json()["created_at"] == fetched.json()["created_at"] == "2020-01-02T03:04:05Z"
    assert updated.json()["updated_at"] == fetched.json()["updated_at"]
