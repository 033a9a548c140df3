"""POST /api/v1/webhooks/sendgrid: signed receipts move deliveries, anything else changes nothing."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import Client as HttpClient

from apps.notifications.dispatch import deliveries_claim, delivery_record_outcome
from apps.notifications.models import Delivery
from apps.notifications.providers.base import SendResult
from apps.notifications.services import notification_send

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhooks/sendgrid"


def signed_post(key: Any, events: list[dict[str, Any]], *, timestamp: int | None = None,
                tamper: bool = False) -> Any:
    body = json.dumps(events)
    ts = str(timestamp if timestamp is not None else int(time.time()))
    signature = base64.b64encode(key.sign((ts + body).encode(), ec.ECDSA(hashes.SHA256()))).decode()
    if tamper:
        body = body.replace("delivered", "bounce")
    return HttpClient().post(
        URL, body, content_type="application/json",
        HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE=signature,
        HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP=ts,
    )


@pytest.fixture
def sent_delivery(client_tenant: Any, email_template: Any) -> Delivery:
    notification = notification_send(
        client=client_tenant, recipients=[{"id": "ada", "email": "ada@example.com"}],
        template_id="welcome", variables={"name": "Ada"},
    ).notification
    delivery = notification.deliveries.get()
    attempt = deliveries_claim(delivery_ids=[str(delivery.id)])[str(delivery.id)]
    delivery_record_outcome(delivery_id=str(delivery.id), attempt=attempt,
                            result=SendResult.sent("sendgrid", "MSGID123"))
    delivery.refresh_from_db()
    return delivery


def event(delivery: Delivery, name: str, event_id: str, **extra: Any) -> dict[str, Any]:
    return {"email": delivery.address, "timestamp": int(time.time()), "event": name,
            "sg_event_id": event_id, "sg_message_id": f"{delivery.provider_message_id}.filter0001.1",
            "notifyhub_delivery_id": str(delivery.id), **extra}


def test_signed_delivered_receipt_marks_delivered_and_completes_notification(
    sent_delivery: Delivery, webhook_keys: Any
) -> None:
    response = signed_post(webhook_keys[2], [event(sent_delivery, "processed", "e1"),
                                             event(sent_delivery, "delivered", "e2")])
    assert response.status_code == 200
    assert response.json()["applied"] == 1
    sent_delivery.refresh_from_db()
    assert sent_delivery.status == "delivered"
    assert sent_delivery.delivered_at is not None
    assert sent_delivery.notification.status == "completed"
    assert list(sent_delivery.events.values_list("event", flat=True))[-2:] == ["processed", "delivered"]


def test_bounce_marks_bounced_with_the_reason(sent_delivery: Delivery, webhook_keys: Any) -> None:
    signed_post(webhook_keys[2], [event(sent_delivery, "bounce", "e1", status="5.1.1",
                                        reason="550 5.1.1 no such user", type="bounce")])
    sent_delivery.refresh_from_db()
    assert (sent_delivery.status, sent_delivery.error_code) == ("bounced", "5.1.1")
    assert "no such user" in sent_delivery.error_message
    sent_delivery.notification.refresh_from_db()
    assert sent_delivery.notification.status == "failed"


def test_receipt_found_by_message_id_without_custom_args(sent_delivery: Delivery, webhook_keys: Any) -> None:
    item = event(sent_delivery, "delivered", "e1")
    del item["notifyhub_delivery_id"]
    signed_post(webhook_keys[2], [item])
    sent_delivery.refresh_from_db()
    assert sent_delivery.status == "delivered"


def test_the_same_receipt_twice_changes_nothing(sent_delivery: Delivery, webhook_keys: Any) -> None:
    batch = [event(sent_delivery, "delivered", "same-id")]
    signed_post(webhook_keys[2], batch)
    second = signed_post(webhook_keys[2], batch)
    assert second.json()["duplicates"] == 1
    assert sent_delivery.events.filter(event="delivered").count() == 1


def test_a_late_processed_never_moves_delivered_back(sent_delivery: Delivery, webhook_keys: Any) -> None:
    signed_post(webhook_keys[2], [event(sent_delivery, "delivered", "e2")])
    signed_post(webhook_keys[2], [event(sent_delivery, "processed", "e1")])
    sent_delivery.refresh_from_db()
    assert sent_delivery.status == "delivered"


def test_unknown_message_is_answered_200_and_ignored(db: None, webhook_keys: Any) -> None:
    response = signed_post(webhook_keys[2], [{"event": "delivered", "sg_event_id": "x", "timestamp": 1,
                                              "sg_message_id": "nope.1", "email": "a@example.com"}])
    assert response.status_code == 200
    assert response.json()["unknown"] == 1


@pytest.mark.parametrize("case", ["unsigned", "tampered", "stale", "wrong_key", "garbage_signature"])
def test_unsigned_tampered_or_stale_batches_are_403_and_change_nothing(
    sent_delivery: Delivery, webhook_keys: Any, case: str
) -> None:
    events = [event(sent_delivery, "delivered", "e1")]
    if case == "unsigned":
        response = HttpClient().post(URL, json.dumps(events), content_type="application/json")
    elif case == "tampered":
        response = signed_post(webhook_keys[2], events, tamper=True)
    elif case == "stale":
        response = signed_post(webhook_keys[2], events, timestamp=int(time.time()) - 3600)
    elif case == "wrong_key":
        response = signed_post(ec.generate_private_key(ec.SECP256R1()), events)
    else:
        response = HttpClient().post(URL, json.dumps(events), content_type="application/json",
                                     HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE="!!notbase64",
                                     HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP=str(int(time.time())))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_signature"
    sent_delivery.refresh_from_db()
    assert sent_delivery.status == "sent"


def test_signed_body_that_is_not_a_list_is_400(db: None, webhook_keys: Any) -> None:
    key = webhook_keys[2]
    body, ts = '{"event": "delivered"}', str(int(time.time()))
    signature = base64.b64encode(key.sign((ts + body).encode(), ec.ECDSA(hashes.SHA256()))).decode()
    response = HttpClient().post(URL, body, content_type="application/json",
                                 HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE=signature,
                                 HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP=ts)
    assert response.status_code == 400
