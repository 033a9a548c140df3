"""The sandbox's `down` mode (TCP resets for the HTTP APIs, a 421 greeting and hang-up for
SMTP) reaches every provider as what it is, a provider that cannot be reached: retryable
`connection_error` (docs/providers.md), never the catch-all `provider_error`."""

from __future__ import annotations

from typing import Any

import pytest

from apps.notifications.providers.base import OutboundMessage, Outcome
from apps.notifications.providers.registry import get_provider

pytestmark = pytest.mark.django_db

MESSAGES = {
    "sendgrid": ("sendgrid", OutboundMessage(
        delivery_id="d-1", notification_id="n-1", client_id="c-1", channel="email",
        to="ada@example.com", subject="Hi", text="Hello")),
    "smtp": ("smtp", OutboundMessage(
        delivery_id="d-1", notification_id="n-1", client_id="c-1", channel="email",
        to="ada@example.com", subject="Hi", text="Hello")),
    "twilio_sms": ("twilio", OutboundMessage(
        delivery_id="d-1", notification_id="n-1", client_id="c-1", channel="sms",
        to="+14155550100", text="Your code is 123")),
    "twilio_whatsapp": ("twilio", OutboundMessage(
        delivery_id="d-1", notification_id="n-1", client_id="c-1", channel="whatsapp",
        to="+14155550100", text="Order 123 shipped")),
    "fcm": ("fcm", OutboundMessage(
        delivery_id="d-1", notification_id="n-1", client_id="c-1", channel="push",
        to="", subject="Hi", text="Code 123", tokens=("device-1", "device-2"))),
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_a_provider_that_is_down_is_a_retryable_connection_error(
    name: str, clean_sandbox: Any,
) -> None:
    sandbox_name, message = MESSAGES[name]
    provider = get_provider(name)
    assert provider.send(message).outcome == Outcome.SENT  # reachable first (warm clients)

    clean_sandbox.control(provider=sandbox_name, down=True)
    result = provider.send(message)

    assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, "connection_error")
    assert result.provider == name


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_down_before_the_first_call_is_a_connection_error_too(name: str, clean_sandbox: Any) -> None:
    sandbox_name, message = MESSAGES[name]
    clean_sandbox.control(provider=sandbox_name, down=True)
    result = get_provider(name).send(message)
    assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, "connection_error")


class _Raising(type(get_provider("sendgrid"))):  # type: ignore[misc]
    """SendGrid whose SDK call raises what an SDK may let through unmapped."""

    exc: Exception = RuntimeError("boom")

    def call(self, payload: Any, message: OutboundMessage) -> Any:
        raise self.exc


@pytest.mark.parametrize(("exc", "code"), [
    (ConnectionResetError(104, "Connection reset by peer"), "connection_error"),
    (OSError("wrapped"), "provider_error"),
    (TimeoutError("slow"), "timeout"),
    (RuntimeError("boom"), "provider_error"),
])
def test_an_unmapped_sdk_exception_is_classified_by_what_it_wraps(exc: Exception, code: str) -> None:
    provider = _Raising()
    provider.exc = exc
    result = provider.send(MESSAGES["sendgrid"][1])
    assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, code)


def test_a_reset_wrapped_by_an_sdk_is_still_a_connection_error() -> None:
    provider = _Raising()
    try:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError as inner:
            raise RuntimeError("SDK: request failed") from inner
    except RuntimeError as wrapped:
        provider.exc = wrapped
    assert provider.send(MESSAGES["sendgrid"][1]).error_code == "connection_error"
