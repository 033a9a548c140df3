"""The request id of a send goes to the provider as metadata it echoes back (SendGrid
custom_args, Twilio's status-callback URL, Vonage client_ref, FCM data), and comes back on the
receipt that closes the delivery: stored on its timeline event (issue 12, correlation)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from apps.core.logging import request_id_var
from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Delivery, DeliveryEvent
from apps.notifications.services import notification_send
from apps.recipients.models import Device, Recipient
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db(transaction=True)

REQUEST_ID = "4f1c0ffee0dd4b6a9c3e2a1b0c9d8e7f"


@pytest.fixture
def in_request() -> Iterator[None]:
    token = request_id_var.set(REQUEST_ID)
    yield
    request_id_var.reset(token)


def _send(client: Any, template: str, recipient: dict[str, Any]) -> Delivery:
    notification = notification_send(client=client, template_id=template, recipients=[recipient],
                                      variables={"name": "Ada", "code": "123"}).notification
    delivery = notification.deliveries.get()
    deliveries_dispatch(delivery_ids=[str(delivery.id)])
    return delivery


@pytest.mark.parametrize(("channel", "recipient", "providers"), [
    ("email", {"id": "ada", "email": "ada@example.com"}, ["sendgrid"]),
    ("sms", {"id": "ada", "phone": "+14155550100"}, ["twilio_sms"]),
    ("sms", {"id": "ada", "phone": "+14155550100"}, ["vonage_sms"]),
    ("whatsapp", {"id": "ada", "whatsapp": "+14155550100"}, ["vonage_whatsapp"]),
])
def test_the_receipt_that_closes_a_delivery_carries_the_request_id_of_its_send(
    client_tenant: Any, clean_sandbox: Any, settings: Any, in_request: None,
    channel: str, recipient: dict[str, Any], providers: list[str],
) -> None:
    settings.CHANNEL_PROVIDERS = {**settings.CHANNEL_PROVIDERS, channel: providers}
    TemplateFactory(client=client_tenant, key="t", channels=[channel],
                    version__sms_body="Code {{ code }}", version__whatsapp_body="Code {{ code }}")

    delivery = _send(client_tenant, "t", recipient)

    # The provider got it as metadata it echoes back
    [message] = clean_sandbox.messages()
    assert REQUEST_ID in json.dumps(message)
    # and the delivered receipt brought it back onto the delivery's timeline
    clean_sandbox.wait_until(lambda: Delivery.objects.get(id=delivery.id).status == "delivered",
                             what="the delivered receipt")
    delivered = DeliveryEvent.objects.get(delivery=delivery, event="delivered")
    assert delivered.detail["request_id"] == REQUEST_ID


def test_a_push_carries_the_request_id_in_its_data(
    client_tenant: Any, clean_sandbox: Any, in_request: None,
) -> None:
    TemplateFactory(client=client_tenant, key="ping", channels=["push"],
                    version__push_title="Hi", version__push_body="Code {{ code }}")
    ada = Recipient.objects.create(client=client_tenant, external_id="ada")
    Device.objects.create(client=client_tenant, recipient=ada, token="good-token-1",
                          platform="android")

    _send(client_tenant, "ping", {"id": "ada"})

    [message] = clean_sandbox.messages(provider="fcm")
    assert message["data"] == {"notifyhub_request_id": REQUEST_ID}
