"""The Twilio Messages sandbox (SMS, WhatsApp), exercised through the real ``twilio`` SDK.

Status callbacks and inbound webhooks go to a local receiver and are verified with the
SDK's own ``RequestValidator``.  No database, broker or Django needed.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.sandbox.receiver import HttpReceiver, Request
from tests.support.sandbox import SandboxProcess, free_port

SENDER = "+15005550006"  # Twilio's magic "valid, owned" From number
DORA = "+15551234567"
STATUS_PATH = "/api/v1/webhooks/twilio"
INBOUND_PATH = "/api/v1/webhooks/twilio/inbound"
CONTENT_SID = "HX" + "ab" * 16
SID_RE = re.compile(r"^SM[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def receiver() -> Iterator[HttpReceiver]:
    rcv = HttpReceiver()
    yield rcv
    rcv.close()


@pytest.fixture(scope="module")
def sandbox(receiver: HttpReceiver) -> Iterator[SandboxProcess]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    with SandboxProcess(
        base_env,
        SANDBOX_SENDGRID_CALLBACK_URL="",
        SANDBOX_TWILIO_STATUS_CALLBACK_URL=receiver.url(STATUS_PATH),
        SANDBOX_TWILIO_INBOUND_URL=receiver.url(INBOUND_PATH),
        SANDBOX_CALLBACK_INTERVAL_MS="10",
        SANDBOX_DELIVERED_DELAY_MS="150",
        SANDBOX_TIMEOUT_HOLD_S="5",
    ) as proc:
        yield proc


@pytest.fixture(autouse=True)
def _clean(sandbox: SandboxProcess, receiver: HttpReceiver) -> None:
    sandbox.reset()
    receiver.clear()


@pytest.fixture
def client(sandbox: SandboxProcess) -> Client:
    """Exactly how NotifyHub redirects the SDK: only ``api.base_url`` changes."""
    twilio = Client(sandbox.twilio_account_sid, sandbox.twilio_auth_token)
    twilio.api.base_url = sandbox.url
    return twilio


def callbacks_for(receiver: HttpReceiver, sid: str, count: int) -> list[Request]:
    receiver.wait_for(count, lambda r: r.form.get("MessageSid") == sid)
    time.sleep(0.15)  # nothing more may follow
    return [r for r in receiver.snapshot() if r.form.get("MessageSid") == sid]


def assert_signed(request: Request, token: str) -> None:
    validator = RequestValidator(token)
    signature = request.headers["X-Twilio-Signature"]
    assert validator.validate(request.url, request.form, signature)
    tampered = {**request.form, "MessageStatus": "read"}
    assert not validator.validate(request.url, tampered, signature)
    assert not RequestValidator("other-token").validate(request.url, request.form, signature)


# -- SMS ------------------------------------------------------------------------------


def test_sms_accepted_with_signed_status_callbacks(
    sandbox: SandboxProcess, client: Client, receiver: HttpReceiver
) -> None:
    callback = receiver.url(STATUS_PATH + "?tenant=acme")  # the query is part of the signed URL
    message = client.messages.create(to=DORA, from_=SENDER, body="Hello Dora", status_callback=callback)

    assert SID_RE.match(message.sid)
    assert message.account_sid == sandbox.twilio_account_sid
    assert (message.to, message.from_, message.body) == (DORA, SENDER, "Hello Dora")
    assert message.status == "queued"
    assert message.num_segments == "1"
    assert message.num_media == "0"
    assert message.direction == "outbound-api"
    assert message.api_version == "2010-04-01"
    assert isinstance(message.date_created, datetime)
    assert message.price is None
    assert message.error_code is None
    assert message.uri == f"/2010-04-01/Accounts/{sandbox.twilio_account_sid}/Messages/{message.sid}.json"

    received = callbacks_for(receiver, message.sid, 2)
    assert [r.form["MessageStatus"] for r in received] == ["sent", "delivered"]
    for request in received:
        assert request.path == STATUS_PATH + "?tenant=acme"
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert_signed(request, sandbox.twilio_auth_token)
        form = request.form
        assert form["SmsSid"] == form["MessageSid"] == message.sid
        assert form["SmsStatus"] == form["MessageStatus"]
        assert (form["AccountSid"], form["From"], form["To"]) == (sandbox.twilio_account_sid, SENDER, DORA)
        assert form["ApiVersion"] == "2010-04-01"
        assert "ErrorCode" not in form

    assert client.messages(message.sid).fetch().status == "delivered"
    [stored] = sandbox.messages(message_id=message.sid)
    assert stored["provider"] == "twilio"
    assert stored["channel"] == "sms"
    assert stored["text"] == "Hello Dora"
    assert stored["status"] == "delivered"
    assert [e["event"] for e in stored["events"]] == ["queued", "sent", "delivered"]
    assert stored["status_callback"] == callback


def test_default_status_callback_and_sdk_helper(sandbox: SandboxProcess, receiver: HttpReceiver) -> None:
    message = sandbox.twilio_client(timeout=5).messages.create(to=DORA, from_=SENDER, body="hi")
    received = callbacks_for(receiver, message.sid, 2)
    assert {r.path for r in received} == {STATUS_PATH}  # SANDBOX_TWILIO_STATUS_CALLBACK_URL


@pytest.mark.parametrize(
    ("to", "sender", "code"),
    [
        ("+15005550001", SENDER, 21211),
        ("+15005550002", SENDER, 21612),
        ("+15005550003", SENDER, 21408),
        ("+15005550004", SENDER, 21610),
        ("+15005550009", SENDER, 21614),
        (DORA, "+15005550001", 21212),
        (DORA, "+15005550007", 21606),
        (DORA, "+15005550008", 21611),
    ],
)
def test_magic_numbers(sandbox: SandboxProcess, client: Client, to: str, sender: str, code: int) -> None:
    with pytest.raises(TwilioRestException) as excinfo:
        client.messages.create(to=to, from_=sender, body="x")
    exc = excinfo.value
    assert (exc.status, exc.code) == (400, code)
    assert exc.msg.startswith("Unable to create record: ")
    assert exc.method == "POST"
    assert sandbox.messages() == []


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"to": "", "body": "x"}, 21604),
        ({"to": DORA}, 21602),
        ({"to": "555-1234", "body": "x"}, 21211),
        ({"to": DORA, "body": "x" * 1601}, 21617),
        ({"to": DORA, "body": "x", "from_": None}, 21603),
    ],
    ids=["no-to", "no-body", "not-e164", "too-long", "no-from"],
)
def test_validation_codes(client: Client, kwargs: dict[str, str], code: int) -> None:
    kwargs.setdefault("from_", SENDER)
    if kwargs["from_"] is None:
        del kwargs["from_"]
    with pytest.raises(TwilioRestException) as excinfo:
        client.messages.create(**kwargs)
    assert (excinfo.value.status, excinfo.value.code) == (400, code)


def test_1600_characters_is_accepted(client: Client) -> None:
    assert client.messages.create(to=DORA, from_=SENDER, body="x" * 1600).num_segments == "11"


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("Grüße à Dora, ça va? ¿Qué?", 1),  # all in the GSM-7 basic set
        ("€" * 80, 1),  # extension table: two septets each
        ("€" * 81, 2),
        ("✓" * 70, 1),  # UCS-2
        ("✓" * 71, 2),
        ("✓" * 134, 2),
        ("✓" * 135, 3),
        ("😀" * 35, 1),  # surrogate pairs: two UTF-16 units each
        ("😀" * 36, 2),
    ],
)
def test_segment_count(client: Client, body: str, segments: int) -> None:
    assert client.messages.create(to=DORA, from_=SENDER, body=body).num_segments == str(segments)


@pytest.mark.parametrize(
    ("to", "statuses", "error_code"),
    [
        ("+15551113006", ["sent", "undelivered"], "30006"),
        ("+15551113003", ["sent", "undelivered"], "30003"),
        ("+15551113008", ["failed"], "30008"),
    ],
)
def test_asynchronous_failures(
    sandbox: SandboxProcess,
    client: Client,
    receiver: HttpReceiver,
    to: str,
    statuses: list[str],
    error_code: str,
) -> None:
    message = client.messages.create(to=to, from_=SENDER, body="x")
    assert message.status == "queued"
    received = callbacks_for(receiver, message.sid, len(statuses))
    assert [r.form["MessageStatus"] for r in received] == statuses
    assert received[-1].form["ErrorCode"] == error_code
    assert all("ErrorCode" not in r.form for r in received[:-1])
    for request in received:
        assert_signed(request, sandbox.twilio_auth_token)
    fetched = client.messages(message.sid).fetch()
    assert (fetched.status, fetched.error_code) == (statuses[-1], int(error_code))


def test_wrong_credentials_are_401(sandbox: SandboxProcess) -> None:
    for sid, token in (
        (sandbox.twilio_account_sid, "wrong-token"),
        ("AC" + "1" * 32, sandbox.twilio_auth_token),
    ):
        bad = Client(sid, token)
        bad.api.base_url = sandbox.url
        with pytest.raises(TwilioRestException) as excinfo:
            bad.messages.create(to=DORA, from_=SENDER, body="x")
        assert (excinfo.value.status, excinfo.value.code) == (401, 20003)
        assert excinfo.value.msg == "Unable to create record: Authenticate"
    assert sandbox.messages() == []
    assert sandbox.stats()["by_provider"]["twilio"]["by_status"] == {"401": 2}


# -- WhatsApp -------------------------------------------------------------------------


def test_whatsapp_accepted(sandbox: SandboxProcess, client: Client, receiver: HttpReceiver) -> None:
    message = client.messages.create(
        to=f"whatsapp:{DORA}", from_=f"whatsapp:{SENDER}", body="Hello ✓" * 50,
        status_callback=receiver.url("/api/v1/webhooks/whatsapp"),
    )
    assert (message.to, message.from_) == (f"whatsapp:{DORA}", f"whatsapp:{SENDER}")
    assert message.num_segments == "1"
    received = callbacks_for(receiver, message.sid, 2)
    assert [r.form["MessageStatus"] for r in received] == ["sent", "delivered"]
    for request in received:
        assert request.path == "/api/v1/webhooks/whatsapp"
        assert request.form["To"] == f"whatsapp:{DORA}"
        assert request.form["From"] == f"whatsapp:{SENDER}"
        assert request.form["ChannelPrefix"] == "whatsapp"
        assert_signed(request, sandbox.twilio_auth_token)
    [stored] = sandbox.messages(channel="whatsapp")
    assert stored["sid"] == message.sid


def test_whatsapp_blocked_by_user(client: Client, receiver: HttpReceiver) -> None:
    message = client.messages.create(to="whatsapp:+155512363014", from_=f"whatsapp:{SENDER}", body="x")
    [request] = callbacks_for(receiver, message.sid, 1)
    assert (request.form["MessageStatus"], request.form["ErrorCode"]) == ("failed", "63014")


def test_whatsapp_outside_session_window_needs_a_template(
    sandbox: SandboxProcess, client: Client, receiver: HttpReceiver
) -> None:
    to, sender = "whatsapp:+155512363016", f"whatsapp:{SENDER}"
    freeform = client.messages.create(to=to, from_=sender, body="Your code is 1234")
    [request] = callbacks_for(receiver, freeform.sid, 1)
    assert (request.form["MessageStatus"], request.form["ErrorCode"]) == ("failed", "63016")

    template = client.messages.create(
        to=to,
        from_=sender,
        content_sid=CONTENT_SID,
        content_variables=json.dumps({"1": "Dora", "2": "1234"}),
    )
    received = callbacks_for(receiver, template.sid, 2)
    assert [r.form["MessageStatus"] for r in received] == ["sent", "delivered"]
    [stored] = sandbox.messages(message_id=template.sid)
    assert stored["content_sid"] == CONTENT_SID
    assert stored["content_variables"] == {"1": "Dora", "2": "1234"}


@pytest.mark.parametrize(
    ("to", "sender", "code"),
    [
        (f"whatsapp:{DORA}", SENDER, 63007),  # From is not a WhatsApp sender
        (DORA, f"whatsapp:{SENDER}", 21910),  # From and To on different channels
    ],
)
def test_whatsapp_prefix_required_on_both(client: Client, to: str, sender: str, code: int) -> None:
    with pytest.raises(TwilioRestException) as excinfo:
        client.messages.create(to=to, from_=sender, body="x")
    assert (excinfo.value.status, excinfo.value.code) == (400, code)


def test_template_variables_must_be_json(client: Client) -> None:
    with pytest.raises(TwilioRestException) as excinfo:
        client.messages.create(
            to=f"whatsapp:{DORA}", from_=f"whatsapp:{SENDER}", content_sid=CONTENT_SID,
            content_variables="not json",
        )
    assert excinfo.value.code == 21656


# -- inbound simulation -----------------------------------------------------------------


def test_inbound_sms_reaches_notifyhub_signed(sandbox: SandboxProcess, receiver: HttpReceiver) -> None:
    def twiml(request: Request) -> tuple[int, str, bytes]:
        if request.form.get("Body", "").strip().upper() == "HELP":
            reply = b"<Response><Message>Reply STOP to unsubscribe.</Message></Response>"
            return 200, "text/xml", reply
        return 200, "text/xml", b"<Response/>"

    receiver.responder = twiml
    answer = sandbox.inbound("+15557654321", SENDER, "HELP")

    assert answer["status"] == 200
    assert answer["content_type"].startswith("text/xml")
    assert "<Message>Reply STOP to unsubscribe.</Message>" in answer["body"]
    [request] = [r for r in receiver.snapshot() if r.path == INBOUND_PATH]
    assert request.path == INBOUND_PATH
    assert_signed(request, sandbox.twilio_auth_token)
    form = request.form
    assert (form["From"], form["To"], form["Body"]) == ("+15557654321", SENDER, "HELP")
    assert form["NumMedia"] == "0"
    assert form["AccountSid"] == sandbox.twilio_account_sid
    assert SID_RE.match(form["MessageSid"])
    assert form == answer["params"]

    stop = sandbox.inbound("+15557654321", SENDER, "STOP")
    assert (stop["status"], stop["body"]) == (200, "<Response/>")


def test_inbound_whatsapp_to_a_given_url(sandbox: SandboxProcess, receiver: HttpReceiver) -> None:
    answer = sandbox.inbound(
        "+15557654321", SENDER, "hi", channel="whatsapp", url=receiver.url("/custom"), profile_name="Dora"
    )
    assert answer["status"] == 200
    [request] = [r for r in receiver.snapshot() if r.path == "/custom"]
    assert_signed(request, sandbox.twilio_auth_token)
    assert request.form["From"] == "whatsapp:+15557654321"
    assert request.form["To"] == f"whatsapp:{SENDER}"
    assert (request.form["WaId"], request.form["ProfileName"]) == ("15557654321", "Dora")


# -- control and stats -----------------------------------------------------------------


def test_failure_injection_scoped_to_twilio(sandbox: SandboxProcess, client: Client) -> None:
    state = sandbox.control(provider="twilio", fail_next=1, fail_status=503)
    assert state["providers"]["twilio"]["overrides"] == {"fail_next": 1, "fail_status": 503}
    assert state["providers"]["sendgrid"]["fail_next"] == 0
    assert state["fail_next"] == 0

    with pytest.raises(TwilioRestException) as excinfo:
        client.messages.create(to=DORA, from_=SENDER, body="x")
    assert (excinfo.value.status, excinfo.value.code) == (503, 20503)
    client.messages.create(to=DORA, from_=SENDER, body="x")

    stats = sandbox.stats()
    twilio = stats["by_provider"]["twilio"]
    assert twilio["by_status"] == {"201": 1, "503": 1}
    assert (twilio["requests"], twilio["accepted"], twilio["rejected"]) == (2, 1, 1)
    assert stats["by_provider"]["sendgrid"]["requests"] == 0
    assert stats["requests"] == 2


def test_global_fail_next_is_shared(sandbox: SandboxProcess, client: Client) -> None:
    sandbox.control(fail_next=1, fail_status=500)
    with pytest.raises(TwilioRestException) as excinfo:
        client.messages.create(to=DORA, from_=SENDER, body="x")
    assert (excinfo.value.status, excinfo.value.code) == (500, 20500)
    assert sandbox.control()["providers"]["smtp"]["fail_next"] == 0  # consumed by twilio


def test_down_resets_the_connection(sandbox: SandboxProcess) -> None:
    sandbox.control(provider="twilio", down=True)
    with pytest.raises(requests.ConnectionError):
        sandbox.twilio_client(timeout=5).messages.create(to=DORA, from_=SENDER, body="x")
    stats = sandbox.stats()["by_provider"]["twilio"]
    assert (stats["requests"], stats["resets"], stats["by_status"]) == (1, 1, {})
    assert sandbox.messages() == []


def test_timeout_holds_until_the_client_gives_up(sandbox: SandboxProcess) -> None:
    sandbox.control(provider="twilio", timeout=True)
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        sandbox.twilio_client(timeout=0.5).messages.create(to=DORA, from_=SENDER, body="x")
    assert time.monotonic() - started < 2
    sandbox.wait_until(lambda: sandbox.stats()["aborted"] == 1, timeout=3, what="abort")
    assert sandbox.messages() == []


def test_timeout_released_by_a_control_change(sandbox: SandboxProcess) -> None:
    sandbox.control(provider="twilio", timeout=True)
    timer = threading.Timer(0.4, lambda: sandbox.control(provider="twilio", timeout=False))
    timer.start()
    started = time.monotonic()
    message = sandbox.twilio_client(timeout=5).messages.create(to=DORA, from_=SENDER, body="x")
    timer.join()
    assert 0.3 < time.monotonic() - started < 3
    assert message.status == "queued"


def test_per_second_counts_accepted_requests(sandbox: SandboxProcess, client: Client) -> None:
    for _ in range(12):
        client.messages.create(to=DORA, from_=SENDER, body="x")
    with pytest.raises(TwilioRestException):
        client.messages.create(to="+15005550001", from_=SENDER, body="x")
    twilio = sandbox.stats()["by_provider"]["twilio"]
    assert sum(twilio["per_second"].values()) == twilio["accepted"] == 12
    assert max(twilio["per_second"].values()) <= 12


def test_unreachable_callback_urls_do_not_hold_up_others(
    sandbox: SandboxProcess, client: Client, receiver: HttpReceiver
) -> None:
    """Status callbacks for a URL nobody listens on (any more) are retried with backoff, and
    meanwhile every other message's callbacks still go out at once (they used to wait, no
    attempt made, until the dead URL's retries gave up minutes later)."""
    dead = f"http://127.0.0.1:{free_port()}{STATUS_PATH}"
    for _ in range(3):  # 6 events: more than the dispatcher's concurrent POSTs
        client.messages.create(to=DORA, from_=SENDER, body="nobody listens", status_callback=dead)
    sandbox.wait_until(
        lambda: sandbox.stats()["callbacks"]["retrying"] >= 4, timeout=5, what="dead callbacks backing off"
    )

    message = client.messages.create(
        to=DORA, from_=SENDER, body="Hello Dora", status_callback=receiver.url(STATUS_PATH)
    )
    received = callbacks_for(receiver, message.sid, 2)
    assert [r.form["MessageStatus"] for r in received] == ["sent", "delivered"]
    callbacks = sandbox.stats()["callbacks"]
    assert callbacks["events_sent"] == 2
    assert callbacks["answers_none"] >= 6  # the dead URL's attempts, counted
    assert callbacks["pending"] == callbacks["retrying"] == 6
