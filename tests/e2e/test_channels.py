"""End to end for SMS, WhatsApp and push with a real worker: Twilio's signed status callbacks
reach the live server, and the shared rate limit holds under a burst (counted at the sandbox)."""

from __future__ import annotations

import collections
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.notifications.models import Delivery
from apps.recipients.models import Device, Recipient
from tests.factories import ClientFactory, TemplateFactory, api_key_for
from tests.support.processes import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def tenant() -> tuple[Any, APIClient]:
    client = ClientFactory()
    TemplateFactory(client=client, key="otp", channels=["sms"], version__sms_body="Code {{ code }}")
    TemplateFactory(client=client, key="wa", channels=["whatsapp"], version__whatsapp_body="Hi {{ code }}")
    TemplateFactory(client=client, key="ping", channels=["push"], version__push_title="Code {{ code }}")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(client)}")
    return client, api


def statuses(notification_id: str) -> dict[str, str]:
    return {d.recipient.external_id: d.status
            for d in Delivery.objects.filter(notification_id=notification_id).select_related("recipient")}


def test_sms_and_whatsapp_reach_delivered_or_failed_through_signed_twilio_callbacks(
    tenant: tuple[Any, APIClient], clean_sandbox: Any, start_worker: Any
) -> None:
    _, api = tenant
    start_worker()
    sms = api.post("/api/v1/notifications", {
        "template_id": "otp", "variables": {"code": "42", "name": "x"}, "priority": "critical",
        "recipients": [{"id": "mobile", "phone": "+14155550100"},
                       {"id": "landline", "phone": "+14155553006"}]}, format="json").json()
    wa = api.post("/api/v1/notifications", {
        "template_id": "wa", "variables": {"code": "42", "name": "x"},
        "recipients": [{"id": "wa_ok", "whatsapp": "+14155550101"},
                       {"id": "wa_blocked", "whatsapp": "+14155563014"}]}, format="json").json()

    wait_for(lambda: statuses(sms["id"]) == {"mobile": "delivered", "landline": "failed"},
             timeout=60, message=f"sms receipts: {statuses(sms['id'])}")
    wait_for(lambda: statuses(wa["id"]) == {"wa_ok": "delivered", "wa_blocked": "failed"},
             timeout=60, message=f"whatsapp receipts: {statuses(wa['id'])}")

    landline = Delivery.objects.get(notification_id=sms["id"], recipient__external_id="landline")
    assert landline.error_code == "landline"
    events = list(landline.events.values_list("event", flat=True))
    # Twilio's callbacks may land before the worker has written its own "sent" (outcomes are
    # written in batches), so only the start of the timeline has a fixed order.
    assert events[:2] == ["accepted", "claimed"]
    assert {"sent", "carrier_sent", "undelivered"} <= set(events)
    assert landline.status == "failed"


def test_push_reaches_sent_and_dead_tokens_are_deactivated(
    tenant: tuple[Any, APIClient], clean_sandbox: Any, start_worker: Any
) -> None:
    client, api = tenant
    ada = Recipient.objects.create(client=client, external_id="ada")
    api.post("/api/v1/recipients/ada/devices", {"token": "phone-1", "platform": "android"}, format="json")
    api.post("/api/v1/recipients/ada/devices", {"token": "unregistered-old", "platform": "ios"},
             format="json")
    start_worker()
    push = api.post("/api/v1/notifications", {"template_id": "ping", "recipients": ["ada"],
                                              "variables": {"code": "7", "name": "x"}},
                    format="json").json()
    wait_for(lambda: statuses(push["id"]) == {"ada": "sent"}, timeout=30, message="push sent")
    assert list(Device.objects.filter(recipient=ada, is_active=True).values_list("token", flat=True)) == [
        "phone-1"]


def test_the_twilio_rate_limit_holds_under_a_burst(
    tenant: tuple[Any, APIClient], clean_sandbox: Any, start_worker: Any
) -> None:
    _, api = tenant
    rate, total = 10, 60
    start_worker(env={"TWILIO_SMS_RATE_PER_SECOND": str(rate)})
    response = api.post("/api/v1/notifications", {
        "template_id": "otp", "variables": {"code": "1", "name": "x"},
        "recipients": [{"id": f"u{i}", "phone": f"+1415555{i:04d}"} for i in range(total)]},
        format="json").json()

    def all_sent() -> bool:
        counts = collections.Counter(statuses(response["id"]).values())
        return counts["sent"] + counts["delivered"] == total

    wait_for(all_sent, timeout=60, message="all sent")

    per_second = clean_sandbox.stats()["by_provider"]["twilio"]["per_second"]
    seconds = sorted(per_second.items())
    counts = [per_second.get(str(s), 0) for s in range(int(seconds[0][0]), int(seconds[-1][0]) + 1)]
    # A token bucket's promise (burst = one second's worth): any k consecutive seconds see at
    # most k x rate + burst sends (+1 for a token produced on a second's boundary). Deferred
    # work spends tokens booked ahead, so a second may catch up on a slow one before it.
    for start in range(len(counts)):
        for end in range(start + 1, len(counts) + 1):
            assert sum(counts[start:end]) <= (end - start) * rate + rate + 1, counts
    assert len(seconds) >= total / rate - 2  # it really was spread out
    attempts = Delivery.objects.filter(notification_id=response["id"]).values_list("attempts", flat=True)
    assert set(attempts) == {1}  # waiting for capacity never spends an attempt
