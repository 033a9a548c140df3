"""Every channel through its official SDK against the sandbox, in-process: what each provider
answer turns into (status, error code, suppression, device deactivation, failover)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core.crypto import pii_hash
from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Delivery, Notification, Suppression
from apps.notifications.services import notification_send
from apps.recipients.models import Device, Recipient
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def templates(client_tenant: Any) -> None:
    TemplateFactory(client=client_tenant, key="otp", channels=["sms"],
                    version__sms_body="Your code is {{ code }}")
    TemplateFactory(client=client_tenant, key="wa", channels=["whatsapp"],
                    version__whatsapp_body="Order {{ code }} shipped")
    TemplateFactory(client=client_tenant, key="wa_template", channels=["whatsapp"],
                    version__whatsapp_body="", version__whatsapp_content_sid="HX" + "a" * 32)
    TemplateFactory(client=client_tenant, key="ping", channels=["push"],
                    version__push_title="Hi {{ name }}", version__push_body="Code {{ code }}",
                    version__push_data={"deep_link": "app://orders/{{ code }}"})
    TemplateFactory(client=client_tenant, key="mail", channels=["email"])


def send(client: Any, template: str, *recipients: dict[str, Any]) -> Notification:
    notification = notification_send(client=client, template_id=template, recipients=list(recipients),
                                     variables={"name": "Ada", "code": "123"}).notification
    deliveries_dispatch(delivery_ids=[str(d.id) for d in notification.deliveries.all()])
    return notification


def only_delivery(notification: Notification) -> Delivery:
    return notification.deliveries.get()


def test_sms_is_sent_through_twilio_with_segments(client_tenant: Any, templates: None,
                                                   clean_sandbox: Any) -> None:
    delivery = only_delivery(send(client_tenant, "otp", {"id": "ada", "phone": "+14155550100"}))
    assert (delivery.status, delivery.provider, delivery.segments) == ("sent", "twilio_sms", 1)
    [message] = clean_sandbox.messages(provider="twilio")
    assert message["text"] == "Your code is 123"
    assert delivery.provider_message_id == message["sid"]


def test_unicode_sms_counts_ucs2_segments(client_tenant: Any, clean_sandbox: Any) -> None:
    TemplateFactory(client=client_tenant, key="long", channels=["sms"], version__sms_body="ж" * 80)
    delivery = only_delivery(send(client_tenant, "long", {"id": "ada", "phone": "+14155550100"}))
    assert delivery.segments == 2  # UCS-2: 67 characters per segment once split


@pytest.mark.parametrize(
    ("number", "code", "suppressed"),
    [("+15005550001", "invalid_number", True), ("+15005550004", "unsubscribed", True),
     ("+15005550009", "not_mobile", True), ("+15005550002", "unroutable", False)],
)
def test_twilio_magic_numbers_fail_permanently_and_suppress_bad_numbers(
    client_tenant: Any, templates: None, clean_sandbox: Any, number: str, code: str, suppressed: bool
) -> None:
    delivery = only_delivery(send(client_tenant, "otp", {"id": "ada", "phone": number}))
    assert (delivery.status, delivery.error_code, delivery.attempts) == ("failed", code, 1)
    assert Suppression.objects.filter(channel="sms", address_hash=pii_hash(number)).exists() is suppressed
    # Twilio's error text quotes the number ("Invalid 'To' Phone Number: +1500…"): stored masked.
    texts = [delivery.error_message, *delivery.events.values_list("error_message", flat=True),
             *Suppression.objects.values_list("detail", flat=True)]
    assert not any(number in text for text in texts)
    if number != "+15005550004":  # the sandbox's 21610 text does not quote it
        assert any(f"{number[:3]}***{number[-2:]}" in text for text in texts)


def test_a_suppressed_number_is_not_sent_to_again(client_tenant: Any, templates: None,
                                                  clean_sandbox: Any) -> None:
    send(client_tenant, "otp", {"id": "ada", "phone": "+15005550004"})
    requests_before = clean_sandbox.stats()["requests"]
    delivery = only_delivery(send(client_tenant, "otp", {"id": "ada", "phone": "+15005550004"}))
    assert (delivery.status, delivery.error_code) == ("suppressed", "suppressed")
    assert "unsubscribed" in delivery.error_message
    assert clean_sandbox.stats()["requests"] == requests_before


def test_whatsapp_body_and_approved_template(client_tenant: Any, templates: None,
                                             clean_sandbox: Any) -> None:
    plain = only_delivery(send(client_tenant, "wa", {"id": "ada", "whatsapp": "+14155550100"}))
    templated = only_delivery(send(client_tenant, "wa_template", {"id": "bob", "whatsapp": "+14155550101"}))
    assert plain.status == templated.status == "sent"
    messages = {m["to"]: m for m in clean_sandbox.messages(provider="twilio")}
    assert messages["whatsapp:+14155550100"]["text"] == "Order 123 shipped"
    assert messages["whatsapp:+14155550101"]["content_sid"] == "HX" + "a" * 32


def test_push_fans_out_to_active_devices_and_deactivates_dead_tokens(
    client_tenant: Any, templates: None, clean_sandbox: Any
) -> None:
    ada = Recipient.objects.create(client=client_tenant, external_id="ada")
    for token in ("good-token-1", "unregistered-token-2"):
        Device.objects.create(client=client_tenant, recipient=ada, token=token, platform="android")

    delivery = only_delivery(send(client_tenant, "ping", {"id": "ada"}))

    assert (delivery.status, delivery.provider) == ("sent", "fcm")
    [message] = clean_sandbox.messages(provider="fcm")
    assert message["token"] == "good-token-1"
    assert message["notification"] == {"title": "Hi Ada", "body": "Code 123"}
    assert message["data"] == {"deep_link": "app://orders/123"}
    dead = Device.objects.get(token="unregistered-token-2")
    assert not dead.is_active and dead.deactivation_reason == "unregistered"


def test_push_to_only_dead_tokens_fails_and_deactivates_them(client_tenant: Any, templates: None,
                                                             clean_sandbox: Any) -> None:
    ada = Recipient.objects.create(client=client_tenant, external_id="ada")
    Device.objects.create(client=client_tenant, recipient=ada, token="invalid-x", platform="ios")
    delivery = only_delivery(send(client_tenant, "ping", {"id": "ada"}))
    assert (delivery.status, delivery.error_code) == ("failed", "no_valid_device")
    assert not Device.objects.get(token="invalid-x").is_active


def test_each_dead_token_gets_its_own_reason(client_tenant: Any, templates: None,
                                            clean_sandbox: Any) -> None:
    """One push to four devices: the sandbox answers each token for itself (UNREGISTERED,
    INVALID_ARGUMENT, SENDER_ID_MISMATCH, accepted); each dead device records its own reason."""
    ada = Recipient.objects.create(client=client_tenant, external_id="ada")
    for token in ("invalid-a", "unregistered-b", "mismatch-c", "good-d"):
        Device.objects.create(client=client_tenant, recipient=ada, token=token, platform="android")

    delivery = only_delivery(send(client_tenant, "ping", {"id": "ada"}))

    assert delivery.status == "sent"
    reasons = dict(Device.objects.filter(recipient=ada).values_list("token", "deactivation_reason"))
    assert reasons == {"invalid-a": "invalid_argument", "unregistered-b": "unregistered",
                       "mismatch-c": "sender_id_mismatch", "good-d": ""}
    assert list(Device.objects.filter(is_active=True).values_list("token", flat=True)) == ["good-d"]


def test_only_dead_tokens_with_different_errors_keep_their_reasons(
    client_tenant: Any, templates: None, clean_sandbox: Any,
) -> None:
    ada = Recipient.objects.create(client=client_tenant, external_id="ada")
    for token in ("unregistered-1", "invalid-2"):
        Device.objects.create(client=client_tenant, recipient=ada, token=token, platform="ios")
    delivery = only_delivery(send(client_tenant, "ping", {"id": "ada"}))
    assert (delivery.status, delivery.error_code) == ("failed", "no_valid_device")
    reasons = dict(Device.objects.filter(recipient=ada).values_list("token", "deactivation_reason"))
    assert reasons == {"unregistered-1": "unregistered", "invalid-2": "invalid_argument"}


def test_fcm_quota_exceeded_retries_no_sooner_than_a_minute(client_tenant: Any, templates: None,
                                                             clean_sandbox: Any) -> None:
    from django.utils import timezone

    ada = Recipient.objects.create(client=client_tenant, external_id="ada")
    Device.objects.create(client=client_tenant, recipient=ada, token="quota-1", platform="web")
    delivery = only_delivery(send(client_tenant, "ping", {"id": "ada"}))
    assert (delivery.status, delivery.error_code) == ("retrying", "quota_exceeded")
    assert (delivery.due_at - timezone.now()).total_seconds() > 55


@pytest.mark.parametrize(("fail_status", "code"), [(503, "unavailable"), (500, "internal")])
def test_fcm_server_errors_are_retryable(client_tenant: Any, templates: None, clean_sandbox: Any,
                                         fail_status: int, code: str) -> None:
    ada = Recipient.objects.create(client=client_tenant, external_id="ada")
    Device.objects.create(client=client_tenant, recipient=ada, token=f"{code}-1", platform="web")
    delivery = only_delivery(send(client_tenant, "ping", {"id": "ada"}))
    assert (delivery.status, delivery.error_code) == ("retrying", code)
    assert Device.objects.get(recipient=ada).is_active


def test_smtp_provider_sends_and_refuses_unknown_mailboxes(client_tenant: Any, templates: None,
                                                          clean_sandbox: Any, settings: Any) -> None:
    settings.CHANNEL_PROVIDERS = {**settings.CHANNEL_PROVIDERS, "email": ["smtp"]}
    ok = only_delivery(send(client_tenant, "mail", {"id": "ada", "email": "ada@example.com"}))
    bounced = only_delivery(send(client_tenant, "mail", {"id": "bob", "email": "bounce@example.com"}))
    temp = only_delivery(send(client_tenant, "mail", {"id": "cy", "email": "tempfail@example.com"}))
    assert (ok.status, ok.provider) == ("sent", "smtp")
    assert [m["to"] for m in clean_sandbox.messages(provider="smtp")] == ["ada@example.com"]
    assert (bounced.status, bounced.error_code) == ("failed", "smtp_550")
    assert Suppression.objects.filter(channel="email", address_hash=pii_hash("bounce@example.com")).exists()
    assert (temp.status, temp.error_code) == ("retrying", "smtp_451")


def test_circuit_breaker_opens_fails_over_to_smtp_then_closes(
    client_tenant: Any, templates: None, clean_sandbox: Any, settings: Any
) -> None:
    import time

    settings.CIRCUIT_BREAKER = {"window_seconds": 30, "min_requests": 3, "failure_ratio": 0.5,
                                "open_seconds": 1, "max_open_seconds": 1}
    clean_sandbox.control(provider="sendgrid", fail_status=503, fail_next=1000)

    first = [only_delivery(send(client_tenant, "mail", {"id": f"u{i}", "email": f"u{i}@example.com"}))
             for i in range(3)]
    assert {d.status for d in first} == {"retrying"}  # SendGrid failed; the breaker counts

    failed_over = only_delivery(send(client_tenant, "mail", {"id": "x", "email": "x@example.com"}))
    assert (failed_over.status, failed_over.provider) == ("sent", "smtp")
    assert failed_over.events.get(event="sent").detail["failed_over_from"] == ["sendgrid"]

    clean_sandbox.control(provider="sendgrid", fail_next=0)
    time.sleep(1.2)  # the open period ends; the next call is the half-open probe
    probe = only_delivery(send(client_tenant, "mail", {"id": "y", "email": "y@example.com"}))
    assert (probe.status, probe.provider) == ("sent", "sendgrid")
    after = only_delivery(send(client_tenant, "mail", {"id": "z", "email": "z@example.com"}))
    assert after.provider == "sendgrid"


def test_an_open_breaker_with_no_failover_defers_without_spending_an_attempt(
    client_tenant: Any, templates: None, clean_sandbox: Any, settings: Any
) -> None:
    settings.CIRCUIT_BREAKER = {"window_seconds": 30, "min_requests": 2, "failure_ratio": 0.5,
                                "open_seconds": 30}
    settings.CHANNEL_PROVIDERS = {**settings.CHANNEL_PROVIDERS, "sms": ["twilio_sms"]}  # no failover
    clean_sandbox.control(provider="twilio", fail_status=500, fail_next=1000)
    for i in range(2):
        send(client_tenant, "otp", {"id": f"u{i}", "phone": f"+1415555010{i}"})
    deferred = only_delivery(send(client_tenant, "otp", {"id": "late", "phone": "+14155550199"}))
    assert (deferred.status, deferred.error_code, deferred.attempts) == ("retrying", "circuit_open", 0)
    assert deferred.events.filter(event="deferred").exists()


def test_sendgrid_calls_of_a_thread_share_one_keep_alive_connection_and_classify_as_before(
    clean_sandbox: Any,
) -> None:
    from apps.notifications.providers import keepalive
    from apps.notifications.providers.base import OutboundMessage, Outcome
    from apps.notifications.providers.registry import get_provider

    provider = get_provider("sendgrid")
    message = OutboundMessage(delivery_id="d-1", notification_id="n-1", client_id="c-1",
                              channel="email", to="ada@example.com", subject="Hi", text="Hello")

    first = provider.send(message)
    [connection] = keepalive._local.pool.values()
    socket = connection.sock
    second = provider.send(message)

    assert (first.outcome, second.outcome) == (Outcome.SENT, Outcome.SENT)
    assert first.provider_message_id and first.provider_message_id != second.provider_message_id
    assert connection.sock is socket  # no new TCP connection for the second call
    assert len(clean_sandbox.messages(to="ada@example.com")) == 2

    clean_sandbox.control(provider="sendgrid", fail_status=429, retry_after=7, fail_next=1)
    limited = provider.send(message)
    assert (limited.outcome, limited.error_code, limited.retry_after) == (
        Outcome.RETRYABLE, "rate_limited", 7.0)
    clean_sandbox.control(provider="sendgrid", fail_status=400, fail_next=1)
    assert provider.send(message).outcome == Outcome.PERMANENT
    assert provider.send(message).outcome == Outcome.SENT  # after an error answer too
    clean_sandbox.control(provider="sendgrid", down=True)
    down = provider.send(message)
    assert (down.outcome, down.error_code) == (Outcome.RETRYABLE, "connection_error")
