"""The sandbox's SMTP server, driven with the stdlib's ``smtplib`` (what Django's SMTP
backend uses). No database, broker or Django needed."""

from __future__ import annotations

import os
import smtplib
import threading
import time
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from tests.support.sandbox import SandboxProcess

SENDER = "noreply@notifyhub.test"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    with SandboxProcess(
        base_env,
        SANDBOX_SENDGRID_CALLBACK_URL="",
        SANDBOX_TWILIO_STATUS_CALLBACK_URL="",
        SANDBOX_TIMEOUT_HOLD_S="5",
    ) as proc:
        yield proc


@pytest.fixture(autouse=True)
def _clean(sandbox: SandboxProcess) -> None:
    sandbox.reset()


def connect(sandbox: SandboxProcess, timeout: float = 5.0) -> smtplib.SMTP:
    assert sandbox.smtp_port
    return smtplib.SMTP(sandbox.host, sandbox.smtp_port, timeout=timeout)


def make_email(to: str = "dora@example.com", **headers: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = f"NotifyHub <{SENDER}>"
    email["To"] = to
    email["Subject"] = "Your receipt: merci, ¡gracias!"
    email["Message-ID"] = "<d-1.123@notifyhub.local>"
    for name, value in headers.items():
        email[name.replace("_", "-")] = value
    email.set_content("Hello Dora ✓")
    email.add_alternative("<p>Hello <b>Dora</b> ✓</p>", subtype="html")
    return email


def test_accepted_message_is_stored(sandbox: SandboxProcess) -> None:
    email = make_email(
        List_Unsubscribe="<https://notifyhub.test/u/abc>, <mailto:unsub@notifyhub.test>",
        List_Unsubscribe_Post="List-Unsubscribe=One-Click",
        X_NotifyHub_Delivery_Id="d-1",
    )
    with connect(sandbox) as smtp:
        assert smtp.send_message(email, to_addrs=["dora@example.com", "audit@example.com"]) == {}

    messages = sandbox.messages(provider="smtp")
    assert [m["to"] for m in messages] == ["dora@example.com", "audit@example.com"]
    dora, audit = messages
    assert dora["channel"] == "email"
    assert dora["message_id"] == "d-1.123@notifyhub.local"
    assert dora["from"] == SENDER
    assert dora["from_name"] == "NotifyHub"
    assert dora["subject"] == "Your receipt: merci, ¡gracias!"
    assert dora["text"].strip() == "Hello Dora ✓"
    assert dora["html"].strip() == "<p>Hello <b>Dora</b> ✓</p>"
    assert dora["list_unsubscribe"] == "<https://notifyhub.test/u/abc>, <mailto:unsub@notifyhub.test>"
    assert dora["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert dora["custom_args"] == {"notifyhub_delivery_id": "d-1"}
    assert dora["status"] == "delivered"
    assert (dora["bcc"], audit["bcc"]) == (False, True)
    assert sandbox.messages(custom_args={"notifyhub_delivery_id": "d-1"}) == messages

    smtp_stats = sandbox.stats()["by_provider"]["smtp"]
    assert smtp_stats["by_status"] == {"250": 1}
    assert sum(smtp_stats["per_second"].values()) == 1

    with urllib.request.urlopen(sandbox.url + "/", timeout=5) as resp:
        page = resp.read().decode()
    assert '<span class="ch ch-email">email</span>' in page
    assert "<td>smtp</td>" in page


@pytest.mark.parametrize(
    ("rcpt", "code", "text"),
    [
        ("bounce@example.com", 550, b"5.1.1 User unknown"),
        ("bounce+42@example.com", 550, b"5.1.1 User unknown"),
        ("tempfail@example.com", 451, b"4.3.0 Try again later"),
    ],
)
def test_refused_recipients(sandbox: SandboxProcess, rcpt: str, code: int, text: bytes) -> None:
    with connect(sandbox) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as excinfo:
            smtp.send_message(make_email(rcpt))
        assert excinfo.value.recipients == {rcpt: (code, text)}
        # the connection stays usable
        assert smtp.send_message(make_email()) == {}
    assert [m["to"] for m in sandbox.messages()] == ["dora@example.com"]
    assert sandbox.stats()["by_provider"]["smtp"]["by_status"] == {"250": 1, str(code): 1}


def test_partly_refused_is_reported_by_sendmail(sandbox: SandboxProcess) -> None:
    """smtplib raises only if every recipient is refused; otherwise it returns the refusals."""
    with connect(sandbox) as smtp:
        refused = smtp.sendmail(SENDER, ["ok@example.com", "bounce@example.com"], make_email().as_bytes())
    assert refused == {"bounce@example.com": (550, b"5.1.1 User unknown")}
    assert [m["to"] for m in sandbox.messages()] == ["ok@example.com"]


def test_injected_failures_map_to_smtp_replies(sandbox: SandboxProcess) -> None:
    sandbox.control(provider="smtp", fail_next=1, fail_status=500)
    with connect(sandbox) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as excinfo:
            smtp.send_message(make_email())
        assert excinfo.value.smtp_code == 451
        assert smtp.send_message(make_email()) == {}

    sandbox.control(provider="smtp", fail_next=1, fail_status=503)
    smtp = connect(sandbox)
    with pytest.raises(smtplib.SMTPDataError) as excinfo:
        smtp.send_message(make_email())
    assert excinfo.value.smtp_code == 421
    with pytest.raises(smtplib.SMTPServerDisconnected):  # 421 closes the channel
        smtp.noop()
    smtp.close()
    assert len(sandbox.messages()) == 1
    assert sandbox.stats()["by_provider"]["smtp"]["by_status"] == {"250": 1, "421": 1, "451": 1}


def test_down_greets_with_421(sandbox: SandboxProcess) -> None:
    sandbox.control(provider="smtp", down=True)
    with pytest.raises(smtplib.SMTPConnectError) as excinfo:
        connect(sandbox)
    assert excinfo.value.smtp_code == 421
    assert sandbox.stats()["by_provider"]["smtp"]["resets"] == 1
    sandbox.control(provider="smtp", down=False)
    with connect(sandbox) as smtp:
        smtp.send_message(make_email())


def test_latency_delays_the_data_reply(sandbox: SandboxProcess) -> None:
    sandbox.control(provider="smtp", latency_ms=300)
    with connect(sandbox) as smtp:
        started = time.monotonic()
        smtp.send_message(make_email())
        assert time.monotonic() - started >= 0.3


def test_timeout_holds_data_until_the_client_gives_up(sandbox: SandboxProcess) -> None:
    sandbox.control(provider="smtp", timeout=True)
    smtp = connect(sandbox, timeout=0.5)
    with pytest.raises((smtplib.SMTPServerDisconnected, TimeoutError)):
        smtp.send_message(make_email())
    smtp.close()
    sandbox.wait_until(lambda: sandbox.stats()["by_provider"]["smtp"]["aborted"] == 1, timeout=3,
                       what="aborted transaction")
    assert sandbox.messages() == []


def test_timeout_released_by_a_control_change(sandbox: SandboxProcess) -> None:
    sandbox.control(provider="smtp", timeout=True)
    timer = threading.Timer(0.4, lambda: sandbox.control(provider="smtp", timeout=False))
    timer.start()
    with connect(sandbox) as smtp:
        started = time.monotonic()
        smtp.send_message(make_email())
        assert time.monotonic() - started >= 0.3
    timer.join()
    assert len(sandbox.messages()) == 1


def test_disabled_with_port_zero() -> None:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    with SandboxProcess(base_env, smtp_port=0, SANDBOX_SENDGRID_CALLBACK_URL="") as proc:
        assert proc.smtp_port == 0
        assert "smtp server disabled" in proc.log_text()
