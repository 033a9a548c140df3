"""POST /api/v1/webhooks/{twilio,whatsapp}: Twilio status callbacks, signed as Twilio signs."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client as HttpClient
from twilio.request_validator import RequestValidator

from apps.core.crypto import pii_hash
from apps.notifications.dispatch import deliveries_claim, delivery_record_outcome
from apps.notifications.models import Delivery, Suppression
from apps.notifications.providers.base import SendResult
from apps.notifications.providers.conf import provider_setting
from apps.notifications.services import notification_send
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db


def post(path: str, params: dict[str, str], *, token: str, tamper: bool = False) -> Any:
    from django.conf import settings

    signature = RequestValidator(token).compute_signature(f"{settings.PUBLIC_BASE_URL}{path}", params)
    if tamper:
        params = {**params, "MessageStatus": "delivered"}
    return HttpClient().post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)


@pytest.fixture
def sms_delivery(client_tenant: Any) -> Delivery:
    TemplateFactory(client=client_tenant, key="otp", channels=["sms"], version__sms_body="Code {{ code }}")
    notification = notification_send(
        client=client_tenant, template_id="otp", variables={"code": "1", "name": "x"},
        recipients=[{"id": "ada", "phone": "+14155550100"}],
    ).notification
    delivery = notification.deliveries.get()
    attempt = deliveries_claim(delivery_ids=[str(delivery.id)])[str(delivery.id)]
    delivery_record_outcome(delivery_id=str(delivery.id), attempt=attempt,
                            result=SendResult.sent("twilio_sms", "SM123", segments=1))
    delivery.refresh_from_db()
    return delivery


def test_delivered_callback_marks_delivered(sms_delivery: Delivery, settings: Any) -> None:
    for status in ("sent", "delivered"):
        response = post("/api/v1/webhooks/twilio", {"MessageSid": "SM123", "MessageStatus": status},
                        token=provider_setting("TWILIO_AUTH_TOKEN"))
        assert response.status_code == 200
    sms_delivery.refresh_from_db()
    assert sms_delivery.status == "delivered"
    assert sms_delivery.segments == 1


def test_landline_callback_fails_and_suppresses_the_number(sms_delivery: Delivery, settings: Any) -> None:
    post("/api/v1/webhooks/twilio", {"MessageSid": "SM123", "MessageStatus": "undelivered",
                                     "ErrorCode": "30006"}, token=provider_setting("TWILIO_AUTH_TOKEN"))
    sms_delivery.refresh_from_db()
    assert (sms_delivery.status, sms_delivery.error_code) == ("failed", "landline")
    assert Suppression.objects.filter(channel="sms", address_hash=pii_hash("+14155550100"),
                                      reason="landline").exists()


def test_the_same_callback_twice_changes_nothing(sms_delivery: Delivery, settings: Any) -> None:
    params = {"MessageSid": "SM123", "MessageStatus": "delivered"}
    post("/api/v1/webhooks/twilio", params, token=provider_setting("TWILIO_AUTH_TOKEN"))
    second = post("/api/v1/webhooks/twilio", params, token=provider_setting("TWILIO_AUTH_TOKEN"))
    assert second.json()["duplicates"] == 1
    assert sms_delivery.events.filter(event="delivered").count() == 1


def test_a_late_sent_never_overwrites_delivered(sms_delivery: Delivery, settings: Any) -> None:
    post("/api/v1/webhooks/twilio", {"MessageSid": "SM123", "MessageStatus": "delivered"},
         token=provider_setting("TWILIO_AUTH_TOKEN"))
    post("/api/v1/webhooks/twilio", {"MessageSid": "SM123", "MessageStatus": "sent"},
         token=provider_setting("TWILIO_AUTH_TOKEN"))
    sms_delivery.refresh_from_db()
    assert sms_delivery.status == "delivered"


def test_unknown_message_sid_is_200(db: None, settings: Any) -> None:
    response = post("/api/v1/webhooks/twilio", {"MessageSid": "SMnope", "MessageStatus": "delivered"},
                    token=provider_setting("TWILIO_AUTH_TOKEN"))
    assert response.status_code == 200
    assert response.json()["unknown"] == 1


@pytest.mark.parametrize("case", ["missing", "wrong_token", "tampered"])
def test_bad_or_missing_signature_is_403_and_changes_nothing(
    sms_delivery: Delivery, settings: Any, case: str
) -> None:
    params = {"MessageSid": "SM123", "MessageStatus": "failed", "ErrorCode": "30008"}
    if case == "missing":
        response = HttpClient().post("/api/v1/webhooks/twilio", params)
    elif case == "wrong_token":
        response = post("/api/v1/webhooks/twilio", params, token="not-the-token")
    else:
        response = post("/api/v1/webhooks/twilio", params,
                        token=provider_setting("TWILIO_AUTH_TOKEN"), tamper=True)
    assert response.status_code == 403
    sms_delivery.refresh_from_db()
    assert sms_delivery.status == "sent"


def test_whatsapp_callbacks_have_their_own_endpoint(client_tenant: Any, settings: Any) -> None:
    TemplateFactory(client=client_tenant, key="wa", channels=["whatsapp"], version__whatsapp_body="Hi")
    notification = notification_send(client=client_tenant, template_id="wa", variables={"name": "x"},
                                     recipients=[{"id": "ada", "whatsapp": "+14155550163"}]).notification
    delivery = notification.deliveries.get()
    attempt = deliveries_claim(delivery_ids=[str(delivery.id)])[str(delivery.id)]
    delivery_record_outcome(delivery_id=str(delivery.id), attempt=attempt,
                            result=SendResult.sent("twilio_whatsapp", "SMwa1"))
    post("/api/v1/webhooks/whatsapp", {"MessageSid": "SMwa1", "MessageStatus": "failed",
                                       "ErrorCode": "63014"}, token=provider_setting("TWILIO_AUTH_TOKEN"))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == ("failed", "whatsapp_blocked")
    assert Suppression.objects.filter(channel="whatsapp").exists()


def test_a_callback_that_beats_the_worker_finds_its_delivery_by_the_id_in_its_url(
    client_tenant: Any, settings: Any
) -> None:
    TemplateFactory(client=client_tenant, key="otp", channels=["sms"], version__sms_body="Code")
    notification = notification_send(client=client_tenant, template_id="otp", variables={"name": "x"},
                                     recipients=[{"id": "ada", "phone": "+14155550100"}]).notification
    delivery = notification.deliveries.get()
    deliveries_claim(delivery_ids=[str(delivery.id)])  # sending; Twilio's SID not stored yet
    post(f"/api/v1/webhooks/twilio?delivery={delivery.id}",
         {"MessageSid": "SMearly", "MessageStatus": "delivered"}, token=provider_setting("TWILIO_AUTH_TOKEN"))
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
