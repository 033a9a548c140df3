"""A provider outage longer than the retry schedule fails nothing, whatever the volume.

Through the real dispatch, the Twilio SDK and the sandbox's `down` mode (TCP resets): a single
SMS (far below the breaker's `min_requests`) spends a few attempts on connection failures, then
the breaker opens on `unreachable_after` of them in a row and the delivery waits without
spending attempts (`circuit_open`), probing as the breaker half-opens, until Twilio is back.
The retry schedule and the breaker are shortened here, not mocked."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.utils import timezone

from apps.notifications import gate
from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Delivery
from apps.notifications.providers.registry import get_provider
from apps.notifications.services import notification_send
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def short_schedule(settings: Any) -> None:
    # 5 attempts, 0.1 s doubling: the whole retry schedule is over in about 1.5 s.
    settings.DELIVERY_MAX_ATTEMPTS = 5
    settings.RETRY_INITIAL_SECONDS = 0.1
    settings.RETRY_JITTER = 0
    settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "open_seconds": 0.3,
                                "max_open_seconds": 0.6, "unreachable_after": 3,
                                "half_open_successes": 1}
    gate.reset_caches()


def _sms(client: Any) -> Delivery:
    TemplateFactory(client=client, key="otp", channels=["sms"], version__sms_body="Code {{ code }}")
    notification = notification_send(
        client=client, template_id="otp", variables={"code": "123", "name": "Ada"},
        recipients=[{"id": "ada", "phone": "+14155550100"}]).notification
    return notification.deliveries.get()


def _dispatch_when_due(delivery: Delivery) -> Delivery:
    """What the countdown message does: wait until the row is due, then dispatch it."""
    delivery.refresh_from_db()
    if delivery.due_at is not None:
        time.sleep(max((delivery.due_at - timezone.now()).total_seconds(), 0))
    deliveries_dispatch(delivery_ids=[str(delivery.id)])
    delivery.refresh_from_db()
    return delivery


def test_a_single_sms_outlives_an_outage_longer_than_its_retry_schedule(
    client_tenant: Any, clean_sandbox: Any, short_schedule: None,
) -> None:
    # Given every SMS provider (Twilio, Vonage) is down and one SMS is accepted
    clean_sandbox.control(provider="twilio", down=True)
    clean_sandbox.control(provider="vonage", down=True)
    delivery = _sms(client_tenant)

    # When it is dispatched again and again for three times its retry schedule
    outage_ends = time.monotonic() + 4.5
    while time.monotonic() < outage_ends:
        delivery = _dispatch_when_due(delivery)
        # Then it is never failed, and it waits without spending attempts
        assert delivery.status == "retrying", delivery.error_code
        assert delivery.attempts < 3
    # (each provider's breaker opened on its own connection failures: Twilio's first)

    events = list(delivery.events.order_by("id").values_list("event", "error_code"))
    assert ("retry_scheduled", "connection_error") in events
    assert ("deferred", "circuit_open") in events
    breaker = gate.breaker_for(gate.account_name(get_provider("twilio_sms")))
    assert breaker.state() in ("open", "half_open")
    assert clean_sandbox.messages() == []

    # When Twilio is back, the next probe sends it, and the breaker closes
    clean_sandbox.control(provider="twilio", down=False)
    for _ in range(10):
        delivery = _dispatch_when_due(delivery)
        if delivery.status != "retrying":
            break
    assert delivery.status in ("sent", "delivered")
    assert delivery.provider == "twilio_sms"
    [message] = clean_sandbox.messages(provider="twilio")
    assert message["sid"] == delivery.provider_message_id
    assert breaker.state() == "closed"


def test_a_connection_failure_now_and_then_does_not_open_the_breaker(
    client_tenant: Any, clean_sandbox: Any, short_schedule: None,
) -> None:
    # Given one reset between successes (a dropped keep-alive connection, say)
    provider = get_provider("twilio_sms")
    breaker = gate.breaker_for(gate.account_name(provider))
    for _ in range(4):
        breaker.record_failure(unreachable=True)
        breaker.record_failure(unreachable=True)
        breaker.record_success()
    # Then fewer than `unreachable_after` in a row never open it
    assert breaker.state() == "closed"
    delivery = _dispatch_when_due(_sms(client_tenant))
    assert delivery.status == "sent"
