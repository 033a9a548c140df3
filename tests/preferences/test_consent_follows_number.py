"""A STOP (and a one-click unsubscribe) follows the address, not the recipient record: it is
kept per client, channel and address (keyed hash) on the suppression list, which dispatch
checks before every provider call, whichever recipient carries the address, and it survives
erasure. Sends go through the real dispatch to the sandbox."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client as HttpClient

from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Delivery, Suppression
from apps.notifications.services import notification_send
from apps.privacy.services import recipient_erase
from apps.recipients.models import Recipient
from tests.factories import RecipientFactory, TemplateFactory
from tests.preferences.test_inbound_keywords import NUMBER, inbound

pytestmark = pytest.mark.django_db


@pytest.fixture
def templates(client_tenant: Any) -> None:
    TemplateFactory(client=client_tenant, key="sms", channels=["sms"],
                    version__sms_body="Your order shipped")
    TemplateFactory(client=client_tenant, key="wa", channels=["whatsapp"],
                    version__whatsapp_body="Your order shipped")
    TemplateFactory(client=client_tenant, key="mail", channels=["email"])


# A send went out: `sent`, or already `delivered` when the sandbox's status callback beat the read.
SENT = ("sent", "delivered")


def send(client: Any, template: str, recipient: str | dict[str, Any],
         category: str = "updates") -> Delivery:
    notification = notification_send(client=client, template_id=template, category=category,
                                     variables={"name": "Ada"}, recipients=[recipient]).notification
    deliveries_dispatch(delivery_ids=[str(d.id) for d in notification.deliveries.all()])
    return notification.deliveries.get()


def texts_to(sandbox: Any, number: str) -> list[dict[str, Any]]:
    return [m for m in sandbox.messages(provider="twilio") if m["to"] == number
            and "unsubscribed" not in m.get("text", "")]  # not the STOP's own confirmation


def test_a_stop_blocks_another_recipient_id_with_the_same_number(
    client_tenant: Any, templates: None, clean_sandbox: Any
) -> None:
    RecipientFactory(client=client_tenant, external_id="aud_q1", phone=NUMBER)
    assert inbound("STOP").status_code == 200
    RecipientFactory(client=client_tenant, external_id="aud_q2", phone=NUMBER)  # added later
    delivery = send(client_tenant, "sms", "aud_q2")
    assert (delivery.status, delivery.error_code) == ("suppressed", "suppressed")
    assert texts_to(clean_sandbox, NUMBER) == []


def test_a_stop_blocks_an_inline_recipient_carrying_the_number(
    client_tenant: Any, templates: None, clean_sandbox: Any
) -> None:
    RecipientFactory(client=client_tenant, external_id="aud_q1", phone=NUMBER)
    inbound("stop")
    delivery = send(client_tenant, "sms", {"id": "brand_new", "phone": NUMBER})
    assert delivery.status == "suppressed"
    assert texts_to(clean_sandbox, NUMBER) == []


def test_a_stop_survives_erasure_and_blocks_the_number_re_added(
    client_tenant: Any, templates: None, clean_sandbox: Any
) -> None:
    first = RecipientFactory(client=client_tenant, external_id="aud_q1", phone=NUMBER)
    inbound("STOP")
    recipient_erase(recipient=first)
    assert not Recipient.objects.filter(external_id="aud_q1").exists()
    row = Suppression.objects.get(client=client_tenant, channel="sms")
    assert row.address == "" and row.address_hash  # only the keyed hash is kept
    delivery = send(client_tenant, "sms", {"id": "aud_q1", "phone": NUMBER})
    assert delivery.status == "suppressed"
    assert texts_to(clean_sandbox, NUMBER) == []


def test_a_whatsapp_stop_blocks_whatsapp_to_the_number_for_any_recipient(
    client_tenant: Any, templates: None, clean_sandbox: Any
) -> None:
    RecipientFactory(client=client_tenant, external_id="aud_q1", phone="", whatsapp=NUMBER)
    inbound("STOP", from_=f"whatsapp:{NUMBER}")
    delivery = send(client_tenant, "wa", {"id": "other", "phone": NUMBER})  # falls back to phone
    assert delivery.status == "suppressed"
    sms = send(client_tenant, "sms", {"id": "other"})  # the SMS channel is untouched
    assert sms.status in SENT


def test_start_lifts_the_number_s_opt_out_for_every_recipient(
    client_tenant: Any, templates: None, clean_sandbox: Any
) -> None:
    RecipientFactory(client=client_tenant, external_id="aud_q1", phone=NUMBER)
    inbound("STOP")
    assert send(client_tenant, "sms", {"id": "aud_q2", "phone": NUMBER}).status == "suppressed"
    inbound("START")
    assert not Suppression.objects.filter(client=client_tenant).exists()
    assert send(client_tenant, "sms", {"id": "aud_q2", "phone": NUMBER}).status in SENT


def test_a_stop_after_erasure_still_blocks_clients_that_send_from_the_number_texted(
    client_tenant: Any, templates: None, clean_sandbox: Any
) -> None:
    # Nobody has the number any more (erased): the client sends from the number texted
    # (the default sender), so the opt-out is kept for it all the same.
    inbound("STOP")
    assert send(client_tenant, "sms", {"id": "new", "phone": NUMBER}).status == "suppressed"


def test_the_api_opt_in_of_the_stopped_recipient_lifts_the_number_s_opt_out(
    api: Any, client_tenant: Any, templates: None, clean_sandbox: Any
) -> None:
    RecipientFactory(client=client_tenant, external_id="aud_q1", phone=NUMBER)
    inbound("STOP")
    # A new record with the number cannot undo it (nothing it stored was an opt-out) …
    api.put("/api/v1/recipients/aud_q2", {"phone": NUMBER}, format="json")
    api.patch("/api/v1/preferences/aud_q2/channels/sms", {"enabled": True}, format="json")
    assert send(client_tenant, "sms", "aud_q2").status == "suppressed"
    # … the record that was stopped, opted back in by the client, does.
    response = api.post("/api/v1/preferences/aud_q1/opt-in", {"channel": "sms"}, format="json")
    assert response.status_code == 200
    assert send(client_tenant, "sms", "aud_q2").status in SENT


def one_click(sandbox: Any, address: str) -> None:
    message = sandbox.messages(to=address)[-1]
    link = message["headers"]["List-Unsubscribe"].strip("<>")
    response = HttpClient().post(urlsplit(link).path, "List-Unsubscribe=One-Click",
                                 content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200


def test_one_click_unsubscribe_suppresses_the_address_for_that_category(
    client_tenant: Any, templates: None, clean_sandbox: Any
) -> None:
    address = "ada@example.com"
    assert send(client_tenant, "mail", {"id": "ada", "email": address},
                category="marketing").status in SENT
    one_click(clean_sandbox, address)
    # Another record with the same address (any case), the same category: not sent.
    other = send(client_tenant, "mail", {"id": "ada_2", "email": "Ada@Example.com"},
                 category="marketing")
    assert (other.status, other.error_code) == ("suppressed", "suppressed")
    # Other categories still go to the address.
    assert send(client_tenant, "mail", {"id": "ada_2"}, category="updates").status in SENT
    row = Suppression.objects.get(client=client_tenant, channel="email")
    assert (row.category, row.reason) == ("marketing", "unsubscribed")
