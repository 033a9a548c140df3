"""A test key's deliveries go through the test-mode providers (the sandbox) whatever the live
provider settings say; reserved addresses simulate outcomes through signed receipts.

The live providers are pointed at a closed port here: a delivery that used them could only
fail to connect, so every message the sandbox holds came through the test-mode settings."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.clients.services import api_key_create
from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Delivery, Suppression
from tests.factories import ClientFactory, TemplateFactory
from tests.support.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

NOWHERE = "http://127.0.0.1:9"  # nothing listens on the discard port


@pytest.fixture
def live_providers_elsewhere(settings: Any) -> None:
    settings.SENDGRID_API_HOST = NOWHERE
    settings.SENDGRID_API_KEY = "live-sendgrid-key-never-sent"
    settings.SMTP_PORT = 9
    settings.TWILIO_API_BASE_URL = NOWHERE
    settings.TWILIO_AUTH_TOKEN = "live-twilio-token-never-sent"
    settings.FCM_API_BASE_URL = NOWHERE


@pytest.fixture
def tenant() -> Any:
    client = ClientFactory()
    TemplateFactory(client=client, key="welcome")
    TemplateFactory(client=client, key="otp", channels=["sms"], version__sms_body="Code {{ code }}")
    return client


def api(client: Any, mode: str) -> APIClient:
    api_client = APIClient()
    api_client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {api_key_create(client=client, name=mode, mode=mode)[1]}")
    return api_client


def send(api_client: APIClient, template: str, recipients: list[dict[str, str]]) -> dict[str, Any]:
    response = api_client.post("/api/v1/notifications", {
        "template_id": template, "variables": {"name": "Ada", "code": "42"},
        "recipients": recipients}, format="json")
    assert response.status_code == 202, response.json()
    return dict(response.json())


def dispatch(notification: dict[str, Any]) -> None:
    deliveries_dispatch(delivery_ids=[d["id"] for d in notification["deliveries"]])


def statuses(notification_id: str) -> dict[str, str]:
    return {d.recipient.external_id: d.status for d in
            Delivery.objects.filter(notification_id=notification_id).select_related("recipient")}


def test_a_test_keys_email_and_sms_reach_the_sandbox_and_simulate_their_outcomes(
    tenant: Any, clean_sandbox: Any, live_providers_elsewhere: None
) -> None:
    test_key = api(tenant, "test")
    email = send(test_key, "welcome", [{"id": "ok", "email": "ok@example.com"},
                                       {"id": "bouncer", "email": "bounce@example.com"}])
    sms = send(test_key, "otp", [{"id": "mobile", "phone": "+14155550100"},
                                 {"id": "landline", "phone": "+14155553006"}])
    assert email["test"] is sms["test"] is True

    dispatch(email)
    dispatch(sms)

    wait_for(lambda: statuses(email["id"]) == {"ok": "delivered", "bouncer": "bounced"},
             timeout=30, message=f"email receipts: {statuses(email['id'])}")
    wait_for(lambda: statuses(sms["id"]) == {"mobile": "delivered", "landline": "failed"},
             timeout=30, message=f"sms receipts: {statuses(sms['id'])}")

    bounced = Delivery.objects.get(notification_id=email["id"], recipient__external_id="bouncer")
    assert (bounced.provider, bounced.error_code) == ("sendgrid", "5.1.1")
    assert bounced.error_message  # the sandbox's bounce reason
    landline = Delivery.objects.get(notification_id=sms["id"], recipient__external_id="landline")
    assert (landline.provider, landline.error_code) == ("twilio_sms", "landline")
    # Every message is at the sandbox (the live hosts were unreachable) …
    assert {m["to"] for m in clean_sandbox.messages(provider="sendgrid")} == {
        "ok@example.com", "bounce@example.com"}
    assert {m["to"] for m in clean_sandbox.messages(channel="sms")} == {"+14155550100", "+14155553006"}
    # … and a simulated bounce or landline never suppresses the address for live sends.
    assert not Suppression.objects.exists()


def test_a_live_key_in_the_same_setup_uses_the_live_providers(
    tenant: Any, clean_sandbox: Any, live_providers_elsewhere: None
) -> None:
    """The control: the same sends with a live key try the (unreachable) live hosts."""
    live_key = api(tenant, "live")
    email = send(live_key, "welcome", [{"id": "ok", "email": "ok@example.com"}])
    sms = send(live_key, "otp", [{"id": "mobile", "phone": "+14155550100"}])
    assert email["test"] is sms["test"] is False

    dispatch(email)
    dispatch(sms)

    for notification in (email, sms):
        delivery = Delivery.objects.get(notification_id=notification["id"])
        assert (delivery.status, delivery.error_code) == ("retrying", "connection_error")
    assert clean_sandbox.messages() == []


def test_test_mode_does_not_share_the_live_breaker(
    tenant: Any, clean_sandbox: Any, live_providers_elsewhere: None, settings: Any
) -> None:
    """Live SendGrid failing until its breaker opens does not stop test sends."""
    settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "min_requests": 2}
    settings.CHANNEL_PROVIDERS = {**settings.CHANNEL_PROVIDERS, "email": ["sendgrid"]}  # no failover
    from apps.notifications import gate

    gate.reset_caches()
    live_key, test_key = api(tenant, "live"), api(tenant, "test")
    for i in range(3):
        dispatch(send(live_key, "welcome", [{"id": f"l{i}", "email": f"l{i}@example.com"}]))
    held = send(live_key, "welcome", [{"id": "late", "email": "late@example.com"}])
    dispatch(held)
    assert Delivery.objects.get(notification_id=held["id"]).error_code == "circuit_open"

    sent = send(test_key, "welcome", [{"id": "ada", "email": "ada@example.com"}])
    dispatch(sent)
    assert Delivery.objects.get(notification_id=sent["id"]).status in ("sent", "delivered")
    gate.reset_caches()
