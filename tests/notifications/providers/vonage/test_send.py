"""Vonage (Messages API) through the official `vonage` SDK against the sandbox: what each of
its answers turns into, its signed status webhooks applied as receipts, and failover between
Twilio and Vonage for SMS and WhatsApp both ways, with the breakers opening and closing."""

from __future__ import annotations

import time
from typing import Any

import pytest

from apps.core.crypto import pii_hash
from apps.notifications import gate
from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Delivery, Notification, Suppression
from apps.notifications.providers.base import OutboundMessage, Outcome
from apps.notifications.providers.registry import get_provider
from apps.notifications.services import notification_send
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db

SMS = OutboundMessage(delivery_id="d-1", notification_id="n-1", client_id="c-1", channel="sms",
                      to="+14155550100", text="Your code is 123")


@pytest.fixture
def templates(client_tenant: Any) -> None:
    TemplateFactory(client=client_tenant, key="otp", channels=["sms"],
                    version__sms_body="Your code is {{ code }}")
    TemplateFactory(client=client_tenant, key="wa", channels=["whatsapp"],
                    version__whatsapp_body="Order {{ code }} shipped")


@pytest.fixture
def vonage_first(settings: Any) -> None:
    settings.CHANNEL_PROVIDERS = {**settings.CHANNEL_PROVIDERS, "sms": ["vonage_sms", "twilio_sms"],
                                  "whatsapp": ["vonage_whatsapp", "twilio_whatsapp"]}


def send(client: Any, template: str, *phones: str, dispatch: bool = True) -> Notification:
    notification = notification_send(
        client=client, template_id=template, variables={"name": "Ada", "code": "123"},
        recipients=[{"id": f"r{i}", "phone": p, "whatsapp": p} for i, p in enumerate(phones)],
    ).notification
    if dispatch:
        deliveries_dispatch(delivery_ids=[str(d.id) for d in notification.deliveries.all()])
    return notification


def test_an_sms_goes_out_through_the_vonage_sdk(clean_sandbox: Any) -> None:
    result = get_provider("vonage_sms").send(SMS)
    assert (result.outcome, result.provider) == (Outcome.SENT, "vonage_sms")
    [message] = clean_sandbox.messages(provider="vonage")
    assert (message["to"], message["text"], message["channel"]) == ("14155550100", "Your code is 123", "sms")
    assert message["message_id"] == result.provider_message_id


@pytest.mark.parametrize(("number", "code", "suppress"), [
    ("+15005550001", "invalid_number", True),
    ("+15005550004", "unsubscribed", True),
    ("+15005550002", "unroutable", False),
])
def test_vonage_refusals_are_permanent_and_bad_numbers_are_suppressed(
    clean_sandbox: Any, number: str, code: str, suppress: bool,
) -> None:
    message = OutboundMessage(**{**SMS.__dict__, "to": number})
    result = get_provider("vonage_sms").send(message)
    assert (result.outcome, result.error_code, result.suppress_address) == (Outcome.PERMANENT, code, suppress)


def test_vonage_rate_limit_and_server_errors_are_retryable(clean_sandbox: Any) -> None:
    clean_sandbox.control(provider="vonage", fail_next=2, fail_status=429, retry_after=7)
    throttled = get_provider("vonage_sms").send(SMS)
    assert (throttled.outcome, throttled.error_code, throttled.retry_after) == (
        Outcome.RETRYABLE, "rate_limited", 7)
    clean_sandbox.control(provider="vonage", fail_next=1, fail_status=500)
    failed = get_provider("vonage_sms").send(SMS)
    assert failed.outcome == Outcome.RETRYABLE


def test_vonage_down_is_a_connection_error(clean_sandbox: Any) -> None:
    clean_sandbox.control(provider="vonage", down=True)
    result = get_provider("vonage_whatsapp").send(SMS)
    assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, "connection_error")


def test_wrong_credentials_are_a_permanent_auth_error(clean_sandbox: Any, settings: Any) -> None:
    settings.VONAGE_API_SECRET = "wrong"
    result = get_provider("vonage_sms").send(SMS)
    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, "provider_auth_error")


def test_signed_status_webhooks_take_a_vonage_sms_to_delivered(
    client_tenant: Any, templates: None, clean_sandbox: Any, vonage_first: None,
) -> None:
    delivery = send(client_tenant, "otp", "+14155550100").deliveries.get()
    # (the receipt may already have been applied when the row is read)
    assert (delivery.status in ("sent", "delivered"), delivery.provider) == (True, "vonage_sms")
    clean_sandbox.wait_until(lambda: Delivery.objects.get(id=delivery.id).status == "delivered",
                             what="the delivered receipt")
    events = list(Delivery.objects.get(id=delivery.id).events.values_list("event", flat=True))
    assert "delivered" in events


def test_an_undeliverable_receipt_fails_the_delivery(
    client_tenant: Any, templates: None, clean_sandbox: Any, vonage_first: None,
) -> None:
    delivery = send(client_tenant, "otp", "+14155553006").deliveries.get()
    clean_sandbox.wait_until(lambda: Delivery.objects.get(id=delivery.id).status == "failed",
                             what="the undeliverable receipt")
    assert Delivery.objects.get(id=delivery.id).error_code == "unreachable"


def test_an_opted_out_number_is_suppressed_through_vonage(
    client_tenant: Any, templates: None, clean_sandbox: Any, vonage_first: None,
) -> None:
    delivery = send(client_tenant, "otp", "+15005550004").deliveries.get()
    assert (delivery.status, delivery.error_code) == ("failed", "unsubscribed")
    assert Suppression.objects.filter(channel="sms", address_hash=pii_hash("+15005550004")).exists()


def _failed_over_from(delivery: Delivery) -> list[str] | None:
    """What the worker's `sent` event says it failed over from; None when the provider's
    receipt recorded the send before the worker did (its `sent` event is then the receipt's:
    a receipt can beat the worker's write by a few milliseconds)."""
    sent = delivery.events.filter(event="sent").get()
    if sent.detail.get("recorded_from") == "receipt":
        return None
    return list(sent.detail.get("failed_over_from") or [])


@pytest.mark.parametrize(("template", "channel"), [("otp", "sms"), ("wa", "whatsapp")])
def test_twilio_down_fails_over_to_vonage_with_failed_over_from_in_the_timeline(
    client_tenant: Any, templates: None, clean_sandbox: Any, settings: Any, template: str,
    channel: str,
) -> None:
    # Given Twilio is down (receipts go nowhere here: the timeline checked is the worker's own,
    # which a receipt arriving a few milliseconds before the worker's write would replace)
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:9"
    settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "open_seconds": 1,
                                "backoff_multiplier": 1, "half_open_successes": 1}
    gate.reset_caches()
    clean_sandbox.control(provider="twilio", down=True)
    # When a few messages are sent: Twilio's breaker opens on its connection failures
    phones = [f"+1415555{i:04d}" for i in range(6)]
    notification = send(client_tenant, template, *phones)
    twilio = gate.breaker_for(gate.account_name(get_provider(f"twilio_{channel}")))
    assert twilio.state() in ("open", "half_open")
    # and what is still retrying goes through Vonage when it is due
    for _ in range(5):
        waiting = list(notification.deliveries.filter(status="retrying"))
        if not waiting:
            break
        time.sleep(max(max(d.due_at for d in waiting).timestamp() - time.time(), 0) + 0.05)
        deliveries_dispatch(delivery_ids=[str(d.id) for d in waiting])
    deliveries = list(notification.deliveries.all())
    # Then every message went out through Vonage, and the timeline says why
    assert {d.provider for d in deliveries} == {f"vonage_{channel}"}
    assert all(d.status in ("sent", "delivered") for d in deliveries)
    assert all(_failed_over_from(d) == [f"twilio_{channel}"] for d in deliveries)
    assert len(clean_sandbox.messages(provider="vonage")) == len(phones)
    assert clean_sandbox.messages(provider="twilio") == []

    # When Twilio is back and its breaker's open period ends, a probe closes it
    clean_sandbox.control(provider="twilio", down=False)
    time.sleep(1.1)
    again = send(client_tenant, template, "+14155550999").deliveries.get()
    assert (again.status, again.provider) == ("sent", f"twilio_{channel}")
    assert twilio.state() == "closed"


def test_vonage_down_fails_over_to_twilio_the_other_way(
    client_tenant: Any, templates: None, clean_sandbox: Any, vonage_first: None, settings: Any,
) -> None:
    clean_sandbox.control(provider="vonage", down=True)
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:9"  # the worker's own timeline (see above)
    notification = send(client_tenant, "wa", *[f"+1415555{i:04d}" for i in range(4)])
    for _ in range(5):
        waiting = list(notification.deliveries.filter(status="retrying"))
        if not waiting:
            break
        time.sleep(max(max(d.due_at for d in waiting).timestamp() - time.time(), 0) + 0.05)
        deliveries_dispatch(delivery_ids=[str(d.id) for d in waiting])
    deliveries = list(notification.deliveries.all())
    assert {d.provider for d in deliveries} == {"twilio_whatsapp"}
    assert ["vonage_whatsapp"] in [_failed_over_from(d) for d in deliveries]


def test_a_clients_provider_order_puts_vonage_first(
    client_tenant: Any, templates: None, clean_sandbox: Any,
) -> None:
    client_tenant.provider_order = {"sms": ["vonage_sms"]}
    client_tenant.full_clean()
    client_tenant.save()
    delivery = send(client_tenant, "otp", "+14155550100").deliveries.get()
    assert delivery.provider == "vonage_sms"


def test_a_provider_order_naming_an_unknown_provider_is_refused(client_tenant: Any) -> None:
    from django.core.exceptions import ValidationError

    client_tenant.provider_order = {"sms": ["vonage_whatsapp"]}
    with pytest.raises(ValidationError) as caught:
        client_tenant.full_clean()
    assert "provider_order" in caught.value.message_dict


def test_a_whatsapp_content_sid_waits_for_twilio_instead_of_failing_over_to_vonage(
    client_tenant: Any, clean_sandbox: Any, settings: Any,
) -> None:
    # Given a WhatsApp template approved at Twilio (a Content SID), and Twilio down
    content_sid = "HX" + "b" * 32
    TemplateFactory(client=client_tenant, key="wa_sid", channels=["whatsapp"],
                    version__whatsapp_body="", version__whatsapp_content_sid=content_sid)
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:9"  # the worker's own timeline (see above)
    settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "open_seconds": 1,
                                "backoff_multiplier": 1, "half_open_successes": 1}
    gate.reset_caches()
    clean_sandbox.control(provider="twilio", down=True)

    # When messages are sent and retried while Twilio's breaker is open
    notification = send(client_tenant, "wa_sid", *[f"+1415555{i:04d}" for i in range(4)])
    waiting = list(notification.deliveries.filter(status="retrying"))
    if waiting:
        time.sleep(max(max(d.due_at for d in waiting).timestamp() - time.time(), 0) + 0.05)
        deliveries_dispatch(delivery_ids=[str(d.id) for d in waiting])

    # Then none failed (no invalid_message) and none reached Vonage: they wait for Twilio
    deliveries = list(notification.deliveries.all())
    assert {d.status for d in deliveries} <= {"retrying", "queued", "pending"}
    assert not any(d.error_code == "invalid_message" for d in deliveries)
    assert clean_sandbox.messages(provider="vonage") == []

    # When Twilio is back, they go out through Twilio with their Content SID
    clean_sandbox.control(provider="twilio", down=False)
    time.sleep(1.1)
    for _ in range(10):  # the half-open breaker lets a few probes through first
        waiting = list(notification.deliveries.exclude(status__in=("sent", "delivered")))
        if not waiting:
            break
        Delivery.objects.filter(id__in=[d.id for d in waiting]).update(due_at=None)
        deliveries_dispatch(delivery_ids=[str(d.id) for d in waiting])
        time.sleep(0.2)
    assert {(d.status, d.provider) for d in notification.deliveries.all()} <= {
        ("sent", "twilio_whatsapp"), ("delivered", "twilio_whatsapp")}
    assert {m["content_sid"] for m in clean_sandbox.messages(provider="twilio")} == {content_sid}
