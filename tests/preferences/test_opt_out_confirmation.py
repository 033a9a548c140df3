"""One confirmation after an opt-out (FCC 24-18): one message to the number through the normal
send path (a real worker, the sandbox), recorded in the consent evidence, never repeated for
repeated STOPs until an opt-in, never a marketing send, and let through although the number is
now opted out."""

from __future__ import annotations

import time
from typing import Any

import pytest

from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Delivery, Notification
from apps.notifications.services import notification_send
from apps.preferences.models import ConsentRecord
from tests.factories import RecipientFactory, TemplateFactory
from tests.preferences.test_inbound_keywords import NUMBER, OUR_NUMBER, inbound

pytestmark = pytest.mark.django_db

DEFAULT_TEXT_PART = "unsubscribed"
SENT = ("sent", "delivered")  # the sandbox's receipt may already have arrived


def confirmations() -> list[Delivery]:
    return list(Delivery.objects.filter(notification__category="opt_out_confirmation")
                .order_by("created_at"))


def dispatch_confirmations() -> list[Delivery]:
    """What a worker does with the published confirmation (the normal dispatch)."""
    pending = [str(d.id) for d in confirmations() if d.status in ("pending", "queued")]
    if pending:
        deliveries_dispatch(delivery_ids=pending)
    return confirmations()


def sms_texts(sandbox: Any, number: str = NUMBER) -> list[str]:
    return [m["text"] for m in sandbox.messages(provider="twilio") if m["to"] == number]


@pytest.mark.django_db(transaction=True)
def test_a_stop_gets_one_confirmation_through_a_real_worker_within_seconds(
    clean_sandbox: Any, client_tenant: Any, start_worker: Any
) -> None:
    recipient = RecipientFactory(client=client_tenant, phone=NUMBER)
    start_worker()
    started = time.monotonic()
    answer = clean_sandbox.inbound(from_=NUMBER, to=OUR_NUMBER, body="Stop.", channel="sms")
    assert answer["status"] == 200, answer
    [message] = clean_sandbox.wait_for_messages(1, timeout=60, provider="twilio")
    assert time.monotonic() - started < 300  # the FCC's five minutes, with room to spare
    assert message["to"] == NUMBER and message["from"] == OUR_NUMBER
    assert DEFAULT_TEXT_PART in message["text"] and "START" in message["text"]
    [delivery] = confirmations()
    assert delivery.recipient_id == recipient.pk and delivery.notification.category != "marketing"
    record = ConsentRecord.objects.get(recipient=recipient, action="confirmed")
    assert (record.channel, record.detail["delivery_id"]) == ("sms", str(delivery.id))


def test_repeated_stops_get_no_second_confirmation_until_an_opt_in(
    clean_sandbox: Any, client_tenant: Any
) -> None:
    RecipientFactory(client=client_tenant, phone=NUMBER)
    inbound("STOP")
    inbound("stop")
    inbound("UNSUBSCRIBE")
    [sent] = dispatch_confirmations()
    assert sent.status in SENT  # through, although the number is opted out
    assert len(sms_texts(clean_sandbox)) == 1
    inbound("START")
    inbound("STOP")
    assert [d.status in SENT for d in dispatch_confirmations()] == [True, True]
    assert len(sms_texts(clean_sandbox)) == 2
    assert ConsentRecord.objects.filter(action="confirmed").count() == 2


def test_the_confirmation_text_is_configured_per_client_and_sender(
    clean_sandbox: Any, client_tenant: Any
) -> None:
    client_tenant.sms_from = OUR_NUMBER
    client_tenant.sms_opt_out_confirmation = "Acme: you will get no more texts. START to undo."
    client_tenant.save()
    RecipientFactory(client=client_tenant, phone=NUMBER)
    inbound("STOP")
    dispatch_confirmations()
    assert sms_texts(clean_sandbox) == ["Acme: you will get no more texts. START to undo."]


def test_only_one_confirmation_when_several_clients_share_the_number(
    clean_sandbox: Any, client_tenant: Any, other_client_recipient: Any
) -> None:
    RecipientFactory(client=client_tenant, phone=other_client_recipient.phone)
    inbound("STOP", from_=other_client_recipient.phone)
    assert len(dispatch_confirmations()) == 1
    assert len(sms_texts(clean_sandbox, other_client_recipient.phone)) == 1


def test_a_whatsapp_stop_is_confirmed_on_whatsapp(clean_sandbox: Any, client_tenant: Any) -> None:
    RecipientFactory(client=client_tenant, phone="", whatsapp=NUMBER)
    inbound("STOP", from_=f"whatsapp:{NUMBER}")
    [delivery] = dispatch_confirmations()
    assert delivery.channel == "whatsapp" and delivery.status in SENT
    [message] = [m for m in clean_sandbox.messages(provider="twilio")
                 if m["to"] == f"whatsapp:{NUMBER}"]
    assert DEFAULT_TEXT_PART in message["text"]


def test_the_confirmation_passes_quiet_hours_and_caps_but_a_forged_one_does_not(
    api: Any, clean_sandbox: Any, client_tenant: Any
) -> None:
    RecipientFactory(client=client_tenant, external_id="ada", phone=NUMBER)
    api.put("/api/v1/preferences/ada", {
        "quiet_hours": {"start": "00:00", "end": "23:59", "timezone": "UTC"},
        "frequency_caps": {"opt_out_confirmation": {"limit": 1, "period": "day"}}}, format="json")
    inbound("STOP")
    [delivery] = dispatch_confirmations()
    assert delivery.status in SENT
    # A client sending with the confirmation's category gets nothing through.
    TemplateFactory(client=client_tenant, key="sms", channels=["sms"], version__sms_body="Sale!")
    forged = notification_send(client=client_tenant, template_id="sms",
                               category="opt_out_confirmation", recipients=["ada"],
                               variables={"name": "Ada"}).notification
    deliveries_dispatch(delivery_ids=[str(d.id) for d in forged.deliveries.all()])
    assert forged.deliveries.get().status == "suppressed"
    assert len(sms_texts(clean_sandbox)) == 1
    assert Notification.objects.filter(category="marketing").count() == 0
