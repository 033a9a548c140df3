"""STOP / START texted through Vonage (`POST /api/v1/webhooks/vonage/inbound`, signed as Vonage
signs its webhooks) work as they do through Twilio: the sandbox posts the signed inbound
message to the live server."""

from __future__ import annotations

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
