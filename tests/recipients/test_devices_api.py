from __future__ import annotations

from typing import Any

import pytest

from apps.recipients.models import Device
from tests.factories import ClientFactory, RecipientFactory

pytestmark = pytest.mark.django_db


def url(recipient: str) -> str:
    return f"/api/v1/recipients/{recipient}/devices"


def test_register_list_and_unregister_a_device(api: Any, client_tenant: Any) -> None:
    RecipientFactory(client=client_tenant, external_id="ada")
    created = api.post(url("ada"), {"token": "tok-1", "platform": "android"}, format="json")
    assert created.status_code == 201
    again = api.post(url("ada"), {"token": "tok-1", "platform": "android"}, format="json")
    assert again.status_code == 200
    listing = api.get(url("ada")).json()
    assert [d["token"] for d in listing["results"]] == ["tok-1"]

    deleted = api.delete(url("ada"), {"token": "tok-1"}, format="json")
    assert deleted.status_code == 204
    device = Device.objects.get(token="tok-1")
    assert not device.is_active
    assert device.deactivation_reason == "unregistered_by_client"
    assert api.delete(url("ada"), {"token": "tok-1"}, format="json").status_code == 404


def test_a_token_registered_by_another_recipient_moves_and_reactivates(
    api: Any, client_tenant: Any
) -> None:
    RecipientFactory(client=client_tenant, external_id="ada")
    RecipientFactory(client=client_tenant, external_id="bob")
    api.post(url("ada"), {"token": "shared", "platform": "ios"}, format="json")
    api.delete(url("ada"), {"token": "shared"}, format="json")
    api.post(url("bob"), {"token": "shared", "platform": "ios"}, format="json")
    device = Device.objects.get(token="shared")
    assert device.recipient.external_id == "bob" and device.is_active


@pytest.mark.parametrize(("body", "field"), [({"token": "x"}, "platform"),
                                            ({"token": "x", "platform": "fax"}, "platform"),
                                            ({"platform": "web"}, "token")])
def test_bad_device_body_is_400(api: Any, client_tenant: Any, body: dict[str, str], field: str) -> None:
    RecipientFactory(client=client_tenant, external_id="ada")
    response = api.post(url("ada"), body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_another_clients_recipient_devices_are_404(api: Any) -> None:
    RecipientFactory(client=ClientFactory(), external_id="theirs")
    assert api.post(url("theirs"), {"token": "t", "platform": "web"}, format="json").status_code == 404
    assert api.get(url("theirs")).status_code == 404
    assert Device.objects.count() == 0


def test_push_to_a_recipient_without_an_active_device_is_422(
    api: Any, client_tenant: Any, settings: Any, tmp_path: Any
) -> None:
    from tests.factories import TemplateFactory

    settings.FCM_SERVICE_ACCOUNT_FILE = str(tmp_path / "sa.json")  # push configured
    TemplateFactory(client=client_tenant, key="ping", channels=["push"],
                    version__push_title="Hi", version__push_body="{{ name }}")
    RecipientFactory(client=client_tenant, external_id="ada")
    response = api.post("/api/v1/notifications", {"recipients": ["ada"], "template_id": "ping",
                                                  "variables": {"name": "x"}}, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "recipient_missing_address"
