"""POST /api/v1/webhooks/twilio/inbound: STOP / START / HELP texted to our numbers, signed as
Twilio signs (and once for real, from the sandbox to the live server)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client as HttpClient
from twilio.request_validator import RequestValidator

from apps.notifications.providers.conf import provider_setting
from apps.preferences.models import ConsentRecord, PreferenceProfile
from apps.recipients.models import Recipient
from tests.factories import ClientFactory, RecipientFactory

pytestmark = pytest.mark.django_db

PATH = "/api/v1/webhooks/twilio/inbound"
NUMBER = "+14155550100"
OUR_NUMBER = "+15005550006"


def inbound(body: str, *, from_: str = NUMBER, token: str | None = None,
            tamper: bool = False, sign: bool = True) -> Any:
    from django.conf import settings

    params = {"MessageSid": "SM" + "1" * 32, "AccountSid": "AC" + "0" * 32, "From": from_,
              "To": ("whatsapp:" if from_.startswith("whatsapp:") else "") + OUR_NUMBER,
              "Body": body, "NumMedia": "0"}
    headers = {}
    if sign:
        validator = RequestValidator(token or provider_setting("TWILIO_AUTH_TOKEN"))
        headers["HTTP_X_TWILIO_SIGNATURE"] = validator.compute_signature(
            f"{settings.PUBLIC_BASE_URL}{PATH}", params)
    if tamper:
        params = {**params, "From": "+14155550199"}
    return HttpClient().post(PATH, params, **headers)


def channel_enabled(recipient: Recipient, channel: str) -> bool:
    profile = PreferenceProfile.objects.filter(recipient=recipient).first()
    spec = (profile.channels if profile else {}).get(channel) or {}
    return spec.get("enabled", True) is not False


@pytest.fixture
def same_number_elsewhere(other_client_recipient: Any) -> Any:
    """The number belongs to recipients of two clients; a third person has another number."""
    bystander = RecipientFactory(client=ClientFactory(), phone="+14155550111")
    return other_client_recipient, bystander


@pytest.mark.parametrize("body", ["STOP", " stop ", "Unsubscribe", "optout", "StopAll", "QUIT",
                                  "cancel", "END", "revoke", "opt out", "Stop.", " STOP!",
                                  "Opt-Out", "OPT OUT!!", "stop all", "unsubscribe 🙏",
                                  "\uff33\uff34\uff2f\uff30"])
def test_stop_keywords_turn_sms_off_for_every_client_with_that_number(
    ada: Any, same_number_elsewhere: Any, body: str
) -> None:
    theirs, bystander = same_number_elsewhere
    response = inbound(body)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert "<Message>" not in response.content.decode()
    assert not channel_enabled(ada, "sms") and not channel_enabled(theirs, "sms")
    assert channel_enabled(ada, "whatsapp") and channel_enabled(ada, "email")
    assert channel_enabled(bystander, "sms")
    records = ConsentRecord.objects.filter(action="opt_out").order_by("id")
    assert {r.recipient_id for r in records} == {ada.pk, theirs.pk}
    for record in records:
        assert (record.action, record.channel, record.source, record.actor) == (
            "opt_out", "sms", "sms_keyword", NUMBER)
        assert record.detail["keyword"] in {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END",
                                            "QUIT", "REVOKE", "OPTOUT"}
        assert record.detail["text"] == body
        assert record.detail["to"] == OUR_NUMBER


@pytest.mark.parametrize("body", ["START", "unstop", "Yes", "Start.", " UNSTOP! "])
def test_start_keywords_turn_sms_back_on(ada: Any, body: str) -> None:
    inbound("STOP")
    assert not channel_enabled(ada, "sms")
    assert inbound(body).status_code == 200
    assert channel_enabled(ada, "sms")
    assert list(ConsentRecord.objects.order_by("id").values_list("action", flat=True)) == [
        "opt_out", "confirmed", "opt_in"]


def test_stop_twice_records_once(ada: Any) -> None:
    inbound("STOP")
    inbound("STOP")
    assert ConsentRecord.objects.filter(action="opt_out").count() == 1
    assert ConsentRecord.objects.filter(action="confirmed").count() == 1


def test_whatsapp_stop_turns_whatsapp_off_only(ada: Any, client_tenant: Any) -> None:
    phone_only = RecipientFactory(client=client_tenant, phone="+14155550163", whatsapp="")
    response = inbound("STOP", from_="whatsapp:+14155550163")
    assert response.status_code == 200
    # ada's WhatsApp number and phone_only's phone (WhatsApp falls back to it).
    assert not channel_enabled(ada, "whatsapp") and not channel_enabled(phone_only, "whatsapp")
    assert channel_enabled(ada, "sms") and channel_enabled(phone_only, "sms")
    assert set(ConsentRecord.objects.values_list("source", "actor")) == {
        ("whatsapp_keyword", "whatsapp:+14155550163")}


def test_a_stop_without_a_number_changes_nobody(client_tenant: Any) -> None:
    no_whatsapp = RecipientFactory(client=client_tenant, phone="", whatsapp="")
    assert inbound("STOP", from_="whatsapp:").status_code == 200
    assert channel_enabled(no_whatsapp, "whatsapp")
    assert not ConsentRecord.objects.exists()


@pytest.mark.parametrize("body", [" help ", "Help?", "HELP!", "info"])
def test_help_answers_with_the_help_text(ada: Any, settings: Any, body: str) -> None:
    settings.PREFERENCES_HELP_TEXT = "Acme alerts: reply STOP to stop & START to resume."
    response = inbound(body)
    assert response.status_code == 200
    assert response.content.decode().endswith(
        "<Response><Message>Acme alerts: reply STOP to stop &amp; START to resume.</Message>"
        "</Response>")
    assert not ConsentRecord.objects.exists()


@pytest.mark.parametrize("body", ["please stop texting me at night", "Stop it!",
                                  "unsubscribe me please", "I want to opt out", "QUIT texting",
                                  "revoke my consent", "STOP sending these"])
def test_sentences_with_an_unambiguous_opt_out_word_opt_out(ada: Any, body: str) -> None:
    response = inbound(body)
    assert response.status_code == 200
    assert not channel_enabled(ada, "sms")
    record = ConsentRecord.objects.get(action="opt_out")
    assert record.action == "opt_out" and record.detail["text"] == body


@pytest.mark.parametrize("body", ["Cancel my appointment", "when does the sale end?",
                                  "thanks!", "start the engine", "help me with my order",
                                  "non-stop deals?", "stopwatch"])
def test_other_messages_get_an_empty_answer_and_change_nothing(ada: Any, body: str) -> None:
    response = inbound(body)
    assert response.status_code == 200
    assert response.content.decode().endswith("<Response />")
    assert not PreferenceProfile.objects.exists()


@pytest.mark.parametrize("case", ["missing", "wrong_token", "tampered"])
def test_a_bad_or_missing_signature_is_403_and_changes_nothing(ada: Any, case: str) -> None:
    if case == "missing":
        response = inbound("STOP", sign=False)
    elif case == "wrong_token":
        response = inbound("STOP", token="not-the-token")
    else:
        response = inbound("STOP", tamper=True)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_signature"
    assert channel_enabled(ada, "sms")
    assert not ConsentRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_stop_texted_through_the_sandbox_turns_sms_off(clean_sandbox: Any, client_tenant: Any) -> None:
    recipient = RecipientFactory(client=client_tenant, phone="+14155550177")
    answer = clean_sandbox.inbound(from_="+14155550177", to=OUR_NUMBER, body="STOP", channel="sms")
    assert answer["status"] == 200, answer
    assert "<Response" in answer["body"]
    assert not channel_enabled(recipient, "sms")
    record = ConsentRecord.objects.get(recipient=recipient, action="opt_out")
    assert (record.source, record.actor, record.detail["message_sid"]) == (
        "sms_keyword", "+14155550177", answer["message_sid"])
    help_answer = clean_sandbox.inbound(from_="+14155550177", to=OUR_NUMBER, body="HELP")
    assert "<Message>" in help_answer["body"]
