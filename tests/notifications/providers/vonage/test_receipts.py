"""POST /api/v1/webhooks/vonage: Vonage's signed status webhooks. The JWT (HS256, the
signature secret) must verify, its `payload_hash` must be the SHA-256 of the exact body and
its `iat` fresh; anything else is 403 and changes nothing."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import jwt
import pytest
from django.test import Client as HttpClient

from apps.notifications.models import Delivery
from apps.notifications.providers.conf import provider_setting
from apps.notifications.services import notification_send
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db

PATH = "/api/v1/webhooks/vonage"


@pytest.fixture
def delivery(client_tenant: Any) -> Delivery:
    TemplateFactory(client=client_tenant, key="otp", channels=["sms"], version__sms_body="Code 1")
    notification = notification_send(client=client_tenant, template_id="otp",
                                     variables={"name": "Ada"},
                                     recipients=[{"id": "ada", "phone": "+14155550100"}]).notification
    return notification.deliveries.get()


def status_body(delivery: Delivery, status: str = "delivered", **extra: Any) -> bytes:
    return json.dumps({"message_uuid": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "to": "14155550100",
                       "from": "15005550006", "timestamp": "2026-12-07T00:00:00.000Z",
                       "status": status, "channel": "sms", "client_ref": str(delivery.id),
                       **extra}).encode()


def token(body: bytes, *, secret: str | None = None, iat: float | None = None,
          payload_hash: str | None = None) -> str:

    claims = {"iat": int(iat if iat is not None else time.time()), "jti": "j-1", "iss": "Vonage",
              "payload_hash": payload_hash or hashlib.sha256(body).hexdigest(),
              "api_key": provider_setting("VONAGE_API_KEY"), "application_id": ""}
    return jwt.encode(claims, secret or provider_setting("VONAGE_SIGNATURE_SECRET"), algorithm="HS256")


def post(body: bytes, authorization: str | None) -> Any:
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    return HttpClient().post(PATH, body, content_type="application/json", **headers)


def test_a_signed_status_webhook_is_applied(delivery: Delivery) -> None:
    body = status_body(delivery)
    response = post(body, f"Bearer {token(body)}")
    assert response.status_code == 200, response.content
    assert response.json()["applied"] == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.provider_message_id) == (
        "delivered", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")


@pytest.mark.parametrize("case", ["unsigned", "not_bearer", "wrong_secret", "tampered",
                                  "hash_of_other_body", "stale", "future", "garbage"])
def test_an_unsigned_tampered_or_stale_webhook_is_403_and_changes_nothing(
    delivery: Delivery, case: str,
) -> None:
    body = status_body(delivery)
    authorization: str | None = f"Bearer {token(body)}"
    if case == "unsigned":
        authorization = None
    elif case == "not_bearer":
        authorization = f"Basic {token(body)}"
    elif case == "wrong_secret":
        authorization = f"Bearer {token(body, secret='another-secret-of-thirty-two-bytes!')}"
    elif case == "tampered":
        body = status_body(delivery, status="rejected")  # the token signs the first body
    elif case == "hash_of_other_body":
        authorization = f"Bearer {token(body, payload_hash=hashlib.sha256(b'{}').hexdigest())}"
    elif case == "stale":
        authorization = f"Bearer {token(body, iat=time.time() - 3600)}"
    elif case == "future":
        authorization = f"Bearer {token(body, iat=time.time() + 3600)}"
    elif case == "garbage":
        authorization = "Bearer not.a.jwt"
    response = post(body, authorization)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_signature"
    delivery.refresh_from_db()
    assert delivery.status == "pending"


def test_a_malformed_body_is_400_with_a_code(delivery: Delivery) -> None:
    body = b'{"status": "delivered"}'
    response = post(body, f"Bearer {token(body)}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_the_test_mode_endpoint_applies_to_test_deliveries_only(delivery: Delivery,
                                                               settings: Any) -> None:
    body = status_body(delivery)
    response = HttpClient().post(
        "/api/v1/webhooks/test/vonage", body, content_type="application/json",
        HTTP_AUTHORIZATION="Bearer " + token(
            body, secret=provider_setting("TEST_MODE_VONAGE_SIGNATURE_SECRET")))
    assert response.status_code == 200
    assert response.json()["applied"] == 0  # a live delivery: untouched
