"""STOP / START texted through Vonage (`POST /api/v1/webhooks/vonage/inbound`, signed as Vonage
signs its webhooks) work as they do through Twilio: the sandbox posts the signed inbound
message to the live server."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from django.test import Client as HttpClient

from apps.preferences.models import ConsentRecord
from tests.factories import RecipientFactory
from tests.preferences.test_inbound_keywords import OUR_NUMBER, channel_enabled


@pytest.mark.django_db(transaction=True)
def test_stop_then_start_through_vonage_turn_sms_off_and_on(clean_sandbox: Any,
                                                            client_tenant: Any) -> None:
    recipient = RecipientFactory(client=client_tenant, phone="+14155550178")
    answer = clean_sandbox.vonage_inbound(from_="+14155550178", to=OUR_NUMBER, text="STOP")
    assert answer["status"] == 200, answer
    assert not channel_enabled(recipient, "sms")
    record = ConsentRecord.objects.get(recipient=recipient, action="opt_out")
    assert (record.source, record.actor, record.detail["message_sid"]) == (
        "sms_keyword", "+14155550178", answer["payload"]["message_uuid"])

    answer = clean_sandbox.vonage_inbound(from_="+14155550178", to=OUR_NUMBER, text="start")
    assert answer["status"] == 200, answer
    assert channel_enabled(recipient, "sms")


@pytest.mark.django_db(transaction=True)
def test_whatsapp_stop_through_vonage_turns_whatsapp_off_only(clean_sandbox: Any,
                                                              client_tenant: Any) -> None:
    recipient = RecipientFactory(client=client_tenant, phone="+14155550179",
                                 whatsapp="+14155550179")
    answer = clean_sandbox.vonage_inbound(from_="+14155550179", to=OUR_NUMBER, text="STOP",
                                          channel="whatsapp")
    assert answer["status"] == 200, answer
    assert not channel_enabled(recipient, "whatsapp")
    assert channel_enabled(recipient, "sms")


@pytest.mark.django_db
def test_an_unsigned_inbound_message_is_403_and_changes_nothing(client_tenant: Any) -> None:
    recipient = RecipientFactory(client=client_tenant, phone="+14155550180")
    response = HttpClient().post("/api/v1/webhooks/vonage/inbound",
                                 b'{"from": "14155550180", "text": "STOP", "channel": "sms"}',
                                 content_type="application/json")
    assert response.status_code == 403
    assert channel_enabled(recipient, "sms")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_help_through_vonage_gets_the_reply_twilio_gives(clean_sandbox: Any, client_tenant: Any,
                                                         settings: Any, channel: str) -> None:
    settings.PREFERENCES_HELP_TEXT = "Acme alerts: reply STOP to stop & START to resume."
    # Through Twilio the reply is the TwiML answer's message
    twilio = clean_sandbox.inbound(from_="+14155550181", to=OUR_NUMBER, body="HELP")
    twiml_text = html.unescape(re.search(r"<Message>(.*)</Message>", twilio["body"]).group(1))
    assert twiml_text == settings.PREFERENCES_HELP_TEXT

    # Through Vonage it is an outbound message from the number written to, via the SDK
    answer = clean_sandbox.vonage_inbound(from_="+14155550181", to=OUR_NUMBER, text="help",
                                          channel=channel)
    assert answer["status"] == 200, answer
    assert json.loads(answer["body"])["reply"] == "sent"
    [reply] = clean_sandbox.messages(provider="vonage")
    assert (reply["to"], reply["channel"], reply["text"]) == ("14155550181", channel, twiml_text)
    assert reply["from"] == OUR_NUMBER.lstrip("+")


@pytest.mark.django_db(transaction=True)
def test_other_messages_through_vonage_get_no_reply(clean_sandbox: Any, client_tenant: Any) -> None:
    answer = clean_sandbox.vonage_inbound(from_="+14155550182", to=OUR_NUMBER, text="thanks!")
    assert json.loads(answer["body"])["reply"] == ""
    assert clean_sandbox.messages(provider="vonage") == []
