"""/api/v1/webhooks/test/{twilio,whatsapp,sendgrid}: receipts from the test-mode sandbox,
verified with the TEST_MODE_* credentials, may only move test deliveries."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import Client as HttpClient
from twilio.request_validator import RequestValidator

from apps.notifications.dispatch import deliveries_claim, delivery_record_outcome
from apps.notifications.models import Delivery, Suppression
from apps.notifications.providers.base import SendResult
from apps.notifications.services import notification_send
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db

TEST_TOKEN = "test-mode-sandbox-token"
LIVE_TOKEN = "live-twilio-token"


@pytest.fixture(autouse=True)
def _tokens(settings: Any) -> None:
    settings.TWILIO_AUTH_TOKEN = LIVE_TOKEN
    settings.TEST_MODE_TWILIO_AUTH_TOKEN = TEST_TOKEN


def twilio_post(path: str, params: dict[str, str], *, token: str) -> Any:
    from django.conf import settings

    signature = RequestValidator(token).compute_signature(f"{settings.PUBLIC_BASE_URL}{path}", params)
    return HttpClient().post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)


def sent_sms(client: Any, *, is_test: bool, sid: str) -> Delivery:
    TemplateFactory(client=client, key=f"otp_{sid}", channels=["sms"], version__sms_body="Code {{ code }}")
    notification = notification_send(
        client=client, template_id=f"otp_{sid}", variables={"code": "1", "name": "x"},
        recipients=[{"id": sid, "phone": "+14155553006"}], is_test=is_test,
    ).notification
    delivery = notification.deliveries.get()
    attempt = deliveries_claim(delivery_ids=[str(delivery.id)])[str(delivery.id)]
    delivery_record_outcome(delivery_id=str(delivery.id), attempt=attempt,
                            result=SendResult.sent("twilio_sms", sid))
    return delivery


def landline(sid: str) -> dict[str, str]:
    return {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30006"}


def test_a_test_mode_callback_moves_a_test_delivery_without_suppressing(client_tenant: Any) -> None:
    delivery = sent_sms(client_tenant, is_test=True, sid="SMtest")
    response = twilio_post("/api/v1/webhooks/test/twilio", landline("SMtest"), token=TEST_TOKEN)
    assert response.status_code == 200
    assert response.json()["applied"] == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == ("failed", "landline")
    assert not Suppression.objects.exists()  # simulated: the live suppression list is untouched


def test_a_test_mode_callback_cannot_touch_a_live_delivery(client_tenant: Any) -> None:
    """The test-mode credentials are the sandbox's, which are weaker than Twilio's: whoever
    holds them must not be able to move live deliveries or suppress live addresses."""
    delivery = sent_sms(client_tenant, is_test=False, sid="SMlive")
    by_sid = twilio_post("/api/v1/webhooks/test/twilio", landline("SMlive"), token=TEST_TOKEN)
    by_id = twilio_post(f"/api/v1/webhooks/test/twilio?delivery={delivery.id}", landline("SMlive"),
                        token=TEST_TOKEN)
    for response in (by_sid, by_id):
        assert response.status_code == 200
        assert (response.json()["applied"], response.json()["unknown"]) == (0, 1)
    delivery.refresh_from_db()
    assert delivery.status == "sent"
    assert not delivery.events.filter(event="undelivered").exists()
    assert not Suppression.objects.exists()


def test_each_callback_url_takes_only_its_own_signature(client_tenant: Any) -> None:
    sent_sms(client_tenant, is_test=True, sid="SMtest")
    for path, token in (("/api/v1/webhooks/test/twilio", LIVE_TOKEN),
                        ("/api/v1/webhooks/test/whatsapp", LIVE_TOKEN),
                        ("/api/v1/webhooks/twilio", TEST_TOKEN)):
        assert twilio_post(path, landline("SMtest"), token=token).status_code == 403, path


def test_live_callbacks_still_apply_to_test_deliveries(client_tenant: Any) -> None:
    """Locally one sandbox serves both modes and posts SendGrid events to the live URL; the
    live URL's signature is the real provider's, so it may move any delivery."""
    delivery = sent_sms(client_tenant, is_test=True, sid="SMtest")
    assert twilio_post("/api/v1/webhooks/twilio", landline("SMtest"), token=LIVE_TOKEN).status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert not Suppression.objects.exists()


def sendgrid_post(key: Any, events: list[dict[str, Any]]) -> Any:
    body = json.dumps(events)
    ts = str(int(time.time()))
    signature = base64.b64encode(key.sign((ts + body).encode(), ec.ECDSA(hashes.SHA256()))).decode()
    return HttpClient().post(
        "/api/v1/webhooks/test/sendgrid", body, content_type="application/json",
        HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE=signature,
        HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP=ts,
    )


def sent_email(client: Any, *, is_test: bool, message_id: str) -> Delivery:
    TemplateFactory(client=client, key=f"welcome_{message_id}")
    notification = notification_send(
        client=client, recipients=[{"id": message_id, "email": "bounce@example.com"}],
        template_id=f"welcome_{message_id}", variables={"name": "Ada"}, is_test=is_test,
    ).notification
    delivery = notification.deliveries.get()
    attempt = deliveries_claim(delivery_ids=[str(delivery.id)])[str(delivery.id)]
    delivery_record_outcome(delivery_id=str(delivery.id), attempt=attempt,
                            result=SendResult.sent("sendgrid", message_id))
    return delivery


def bounce(delivery: Delivery, event_id: str) -> dict[str, Any]:
    return {"email": delivery.address, "timestamp": int(time.time()), "event": "bounce",
            "sg_event_id": event_id, "sg_message_id": f"{delivery.provider_message_id}.f.1",
            "notifyhub_delivery_id": str(delivery.id), "status": "5.1.1",
            "reason": "550 5.1.1 User unknown"}


def test_sendgrid_test_mode_events_move_test_deliveries_only(
    client_tenant: Any, webhook_keys: Any
) -> None:
    test = sent_email(client_tenant, is_test=True, message_id="T1")
    live = sent_email(client_tenant, is_test=False, message_id="L1")
    test.refresh_from_db()
    live.refresh_from_db()
    response = sendgrid_post(webhook_keys[2], [bounce(test, "e1"), bounce(live, "e2")])
    assert response.status_code == 200
    assert (response.json()["applied"], response.json()["unknown"]) == (1, 1)
    test.refresh_from_db()
    live.refresh_from_db()
    assert (test.status, test.error_code) == ("bounced", "5.1.1")
    assert live.status == "sent"
    assert not Suppression.objects.exists()


def test_sendgrid_test_mode_events_need_the_test_mode_key(
    client_tenant: Any, webhook_keys: Any, settings: Any
) -> None:
    test = sent_email(client_tenant, is_test=True, message_id="T1")
    test.refresh_from_db()
    settings.TEST_MODE_SENDGRID_WEBHOOK_PUBLIC_KEY = ""
    response = sendgrid_post(webhook_keys[2], [bounce(test, "e1")])
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_signature"
    test.refresh_from_db()
    assert test.status == "sent"
