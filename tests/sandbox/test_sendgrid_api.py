"""The SendGrid sandbox, exercised through the real ``sendgrid`` SDK.

No database, broker or Django needed (the module's ``sandbox`` fixture overrides the
shared, live-server based one): ``.venv/bin/pytest tests/sandbox -q``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.mail import Category, CustomArg, Mail

from tests.support.sandbox import REPO_ROOT, SandboxProcess, free_port

API_KEY = "test-sendgrid-key"
SENDER = "noreply@notifyhub.test"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


# -- a tiny webhook receiver -----------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(json.loads(self.body))


class WebhookReceiver:
    """Records every POST; answers ``fail_status`` to the next ``fail_next`` requests."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.fail_next = 0
        self.fail_status = 500
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests.append(Received(dict(self.headers.items()), body))
                    status = 200
                    if receiver.fail_next > 0:
                        receiver.fail_next -= 1
                        status = receiver.fail_status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/webhooks/sendgrid"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.fail_next = 0
            self.fail_status = 500

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def events(self) -> list[dict[str, Any]]:
        return [event for req in self.snapshot() for event in req.events]

    def wait_for_events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            if len(events) >= count:
                return events
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} events, got {len(events)}: {events}")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify(received: Received, public_key: str) -> bool:
    webhook = EventWebhook()
    key = webhook.convert_public_key_to_ecdsa(public_key)
    return bool(
        webhook.verify_signature(
            received.body.decode("utf-8"),
            received.headers[SIGNATURE_HEADER],
            received.headers[TIMESTAMP_HEADER],
            key,
        )
    )


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


# -- fixtures --------------------------------------------------------------------


@pytest.fixture(scope="session")
def _clean_test_broker() -> None:
    """Overrides the shared autouse fixture: these tests need no Redis broker."""


@pytest.fixture
def _sendgrid_public_key() -> None:
    """Overrides the shared autouse fixture: these tests need no Django settings."""


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("keys") / "sendgrid.pem"
    result = run_cli("keygen", "--out", str(path))
    assert result.returncode == 0, result.stderr
    return path, result.stdout.strip()


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    rcv = WebhookReceiver()
    yield rcv
    rcv.close()


@pytest.fixture(scope="module")
def sandbox(signing_key: tuple[Path, str], receiver: WebhookReceiver) -> Iterator[SandboxProcess]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    with SandboxProcess(
        base_env,
        SANDBOX_SENDGRID_API_KEY=API_KEY,
        SANDBOX_SENDGRID_SIGNING_KEY_FILE=str(signing_key[0]),
        SANDBOX_SENDGRID_CALLBACK_URL=receiver.url,
        SANDBOX_CALLBACK_INTERVAL_MS="30",
        SANDBOX_DELIVERED_DELAY_MS="30",
    ) as proc:
        yield proc


@pytest.fixture(autouse=True)
def _clean(sandbox: SandboxProcess, receiver: WebhookReceiver) -> None:
    sandbox.reset()
    receiver.clear()


@pytest.fixture
def sg(sandbox: SandboxProcess) -> SendGridAPIClient:
    return SendGridAPIClient(api_key=API_KEY, host=sandbox.url)


def simple_mail(to: str | list[str] = "dora@example.com", **kwargs: Any) -> Mail:
    defaults: dict[str, Any] = {
        "subject": "Welcome",
        "plain_text_content": "Hello Dora",
        "html_content": "<p>Hello <b>Dora</b></p>",
    }
    defaults.update(kwargs)
    return Mail(from_email=SENDER, to_emails=to, **defaults)


def error_fields(exc: HTTPError) -> list[str | None]:
    return [e["field"] for e in exc.to_dict["errors"]]


# -- Mail Send -------------------------------------------------------------------


def test_accepted_mail_is_recorded(sandbox: SandboxProcess, sg: SendGridAPIClient) -> None:
    mail = simple_mail()
    mail.custom_arg = [CustomArg("notification_id", "n-1"), CustomArg("tenant", "acme")]
    mail.category = Category("welcome")

    response = sg.send(mail)

    assert response.status_code == 202
    assert response.body == b""
    x_message_id = response.headers["X-Message-Id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", x_message_id)

    [msg] = sandbox.messages(message_id=x_message_id)
    assert msg["to"] == "dora@example.com"
    assert msg["from"] == SENDER
    assert msg["subject"] == "Welcome"
    assert msg["text"] == "Hello Dora"
    assert msg["html"] == "<p>Hello <b>Dora</b></p>"
    assert msg["custom_args"] == {"notification_id": "n-1", "tenant": "acme"}
    assert msg["categories"] == ["welcome"]
    assert msg["sg_message_id"] == f"{x_message_id}.sandbox.0"
    assert msg["received_at"].endswith("Z")

    # Compared by id: the message's status moves on (sent → delivered) as its callback runs.
    assert [m["id"] for m in sandbox.messages(to="dora@example.com")] == [msg["id"]]
    assert [m["id"] for m in sandbox.messages(custom_args={"notification_id": "n-1"})] == [msg["id"]]
    assert sandbox.messages(custom_args={"notification_id": "other"}) == []
    assert sandbox.message(msg["id"])["message_id"] == x_message_id

    stats = sandbox.stats()
    assert (stats["requests"], stats["accepted"], stats["rejected"]) == (1, 1, 0)
    assert stats["by_status"] == {"202": 1}
    assert sum(stats["per_second"].values()) == 1


def test_one_message_per_recipient_with_personalization_overrides(
    sandbox: SandboxProcess, sg: SendGridAPIClient
) -> None:
    payload = {
        "personalizations": [
            {"to": [{"email": "a@example.com"}, {"email": "b@example.com"}]},
            {
                "to": [{"email": "c@example.com", "name": "C"}],
                "cc": [{"email": "cc@example.com"}],
                "subject": "Personal subject",
                "custom_args": {"tenant": "override", "extra": "yes"},
                "headers": {"X-Trace": "t-1"},
            },
        ],
        "from": {"email": SENDER, "name": "NotifyHub"},
        "subject": "Top subject",
        "content": [{"type": "text/plain", "value": "hi"}],
        "custom_args": {"tenant": "acme"},
        "headers": {"X-Top": "1"},
    }
    response = sg.send(payload)
    assert response.status_code == 202

    messages = {m["to"]: m for m in sandbox.messages()}
    assert set(messages) == {"a@example.com", "b@example.com", "c@example.com"}
    assert messages["a@example.com"]["subject"] == "Top subject"
    assert messages["a@example.com"]["custom_args"] == {"tenant": "acme"}
    assert messages["a@example.com"]["html"] is None
    assert messages["c@example.com"]["subject"] == "Personal subject"
    assert messages["c@example.com"]["custom_args"] == {"tenant": "override", "extra": "yes"}
    assert messages["c@example.com"]["headers"] == {"X-Top": "1", "X-Trace": "t-1"}
    assert messages["c@example.com"]["cc"] == ["cc@example.com"]
    assert messages["c@example.com"]["sg_message_id"].endswith(".sandbox.2")


def test_wrong_api_key_is_401(sandbox: SandboxProcess) -> None:
    client = SendGridAPIClient(api_key="wrong-key", host=sandbox.url)
    with pytest.raises(HTTPError) as excinfo:
        client.send(simple_mail())
    assert excinfo.value.status_code == 401
    assert excinfo.value.to_dict == {
        "errors": [
            {
                "message": "The provided authorization grant is invalid, expired, or revoked",
                "field": None,
                "help": None,
            }
        ]
    }
    assert sandbox.messages() == []
    assert sandbox.stats()["by_status"] == {"401": 1}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param(
            Mail(from_email=SENDER, to_emails="dora@example.com", plain_text_content="x"),
            "subject",
            id="missing-subject",
        ),
        pytest.param(
            {
                "personalizations": [{"to": [{"email": "not-an-email"}]}],
                "from": {"email": SENDER},
                "subject": "s",
                "content": [{"type": "text/plain", "value": "x"}],
            },
            "personalizations.0.to.0.email",
            id="bad-email",
        ),
        pytest.param(
            {
                "personalizations": [{"to": [{"email": "dora@example.com"}]}],
                "from": {"email": SENDER},
                "subject": "s",
                "content": [
                    {"type": "text/html", "value": "<p>x</p>"},
                    {"type": "text/plain", "value": "x"},
                ],
            },
            "content.0.type",
            id="html-before-text",
        ),
        pytest.param(
            {
                "personalizations": [{"to": [{"email": "dora@example.com"}]}],
                "from": {"email": SENDER},
                "subject": "s",
                "content": [{"type": "text/plain", "value": "x"}],
                "custom_args": {"attempt": 3},
            },
            "custom_args.attempt",
            id="non-string-custom-arg",
        ),
    ],
)
def test_invalid_payload_is_400_naming_the_field(
    sandbox: SandboxProcess, sg: SendGridAPIClient, payload: Any, field: str
) -> None:
    with pytest.raises(HTTPError) as excinfo:
        sg.send(payload)
    assert excinfo.value.status_code == 400
    errors = excinfo.value.to_dict["errors"]
    assert [e["field"] for e in errors] == [field]
    assert errors[0]["message"]
    assert errors[0]["help"] is None
    assert sandbox.messages() == []


def test_400_lists_every_problem(sg: SendGridAPIClient) -> None:
    payload = {
        "personalizations": [{"to": [{"email": "ok@example.com"}, {"email": "nope"}]}],
        "from": {"email": "also bad"},
        "content": [{"type": "text/plain", "value": ""}],
        "headers": {"X-Count": 1},
    }
    with pytest.raises(HTTPError) as excinfo:
        sg.send(payload)
    assert set(error_fields(excinfo.value)) == {
        "personalizations.0.to.1.email",
        "from.email",
        "subject",
        "content.0.value",
        "headers.X-Count",
    }


def test_sandbox_mode_is_accepted_but_not_stored(sandbox: SandboxProcess, sg: SendGridAPIClient) -> None:
    mail = simple_mail().get()
    mail["mail_settings"] = {"sandbox_mode": {"enable": True}}
    assert sg.send(mail).status_code == 200
    assert sandbox.messages() == []


# -- failure injection and latency -------------------------------------------------


def test_injected_429_has_retry_after(sandbox: SandboxProcess, sg: SendGridAPIClient) -> None:
    state = sandbox.control(fail_next=1, fail_status=429, retry_after=7)
    assert state["fail_next"] == 1
    assert state["fail_status"] == 429

    with pytest.raises(HTTPError) as excinfo:
        sg.send(simple_mail())
    assert excinfo.value.status_code == 429
    assert excinfo.value.headers["Retry-After"] == "7"
    assert excinfo.value.to_dict["errors"][0]["message"]

    assert sg.send(simple_mail()).status_code == 202
    assert sandbox.control()["fail_next"] == 0


def test_fail_next_500_then_success(sandbox: SandboxProcess, sg: SendGridAPIClient) -> None:
    sandbox.control(fail_next=2)
    for _ in range(2):
        with pytest.raises(HTTPError) as excinfo:
            sg.send(simple_mail())
        assert excinfo.value.status_code == 500
    assert sg.send(simple_mail()).status_code == 202

    assert len(sandbox.messages()) == 1
    stats = sandbox.stats()
    assert stats["by_status"] == {"202": 1, "500": 2}
    assert (stats["requests"], stats["accepted"], stats["rejected"]) == (3, 1, 2)


def test_latency_is_applied(sandbox: SandboxProcess, sg: SendGridAPIClient) -> None:
    sandbox.control(latency_ms=300)
    started = time.monotonic()
    assert sg.send(simple_mail()).status_code == 202
    assert time.monotonic() - started >= 0.3


def test_client_gone_during_latency_is_not_stored(sandbox: SandboxProcess, receiver: WebhookReceiver) -> None:
    """A sender killed mid-request must not produce a message or events.

    The latency is far longer than the client's timeout (the sandbox stops waiting as soon
    as the client is gone), so no scheduling delay can let the answer arrive in time."""
    sandbox.control(latency_ms=30_000)
    client = SendGridAPIClient(api_key=API_KEY, host=sandbox.url)
    client.client.timeout = 0.2
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        client.send(simple_mail())

    sandbox.wait_until(lambda: sandbox.stats()["aborted"] == 1, timeout=5, what="abort")
    stats = sandbox.stats()
    assert stats["accepted"] == 0
    assert stats["by_status"] == {}
    assert sandbox.messages() == []
    time.sleep(0.15)  # > callback interval + delivered delay
    assert receiver.events() == []


def test_control_validation_and_reset(sandbox: SandboxProcess) -> None:
    for bad in (
        {"fail_rate": 2},
        {"latency_ms": "slow"},
        {"nope": 1},
        {"fail_status": 200},
        {"down": 1},
        {"provider": "pigeon", "down": True},
    ):
        request = urllib.request.Request(
            sandbox.url + "/sandbox/control",
            data=json.dumps(bad).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(request, timeout=5)
        assert excinfo.value.code == 400

    sandbox.control(latency_ms=5, fail_rate=0.5)
    sandbox.control(provider="sendgrid", fail_next=3)
    sandbox.reset()
    state = sandbox.control()
    providers = state.pop("providers")
    assert state == {
        "latency_ms": 0,
        "fail_next": 0,
        "fail_status": 500,
        "retry_after": 1,
        "fail_rate": 0.0,
        "down": False,
        "timeout": False,
    }
    assert set(providers) == {"sendgrid", "twilio", "fcm", "smtp", "vonage"}
    assert all(p["overrides"] == {} and p["fail_next"] == 0 for p in providers.values())


# -- signed event webhook callbacks -----------------------------------------------


def test_signed_callbacks_processed_delivered_and_bounce(
    sandbox: SandboxProcess,
    sg: SendGridAPIClient,
    receiver: WebhookReceiver,
    signing_key: tuple[Path, str],
) -> None:
    public_key = signing_key[1]
    assert sandbox.public_key() == public_key

    mail = simple_mail(["ok@example.com", "bounce+1@example.com"], is_multiple=True)
    mail.custom_arg = [CustomArg("notification_id", "n-42"), CustomArg("tenant", "acme")]
    mail.category = Category("welcome")
    x_message_id = sg.send(mail).headers["X-Message-Id"]

    events = receiver.wait_for_events(4)
    assert len(events) == 4

    for received in receiver.snapshot():
        assert received.headers["Content-Type"] == "application/json"
        assert received.body.endswith(b"\r\n")  # part of the signed payload, like SendGrid
        assert received.headers[TIMESTAMP_HEADER].isdigit()
        assert verify(received, public_key)

    by_kind = {(e["email"], e["event"]): e for e in events}
    assert set(by_kind) == {
        ("ok@example.com", "processed"),
        ("ok@example.com", "delivered"),
        ("bounce+1@example.com", "processed"),
        ("bounce+1@example.com", "bounce"),
    }
    for event in events:
        assert event["notification_id"] == "n-42"
        assert event["tenant"] == "acme"
        assert event["category"] == "welcome"
        assert isinstance(event["timestamp"], int)
        assert event["sg_message_id"].startswith(f"{x_message_id}.sandbox.")
        assert event["smtp-id"]
    assert len({e["sg_event_id"] for e in events}) == 4

    bounce = by_kind[("bounce+1@example.com", "bounce")]
    assert bounce["type"] == "bounce"
    assert bounce["status"] == "5.1.1"
    assert bounce["reason"] == ("550 5.1.1 The email account that you tried to reach does not exist.")
    ok_ids = {by_kind[("ok@example.com", k)]["sg_message_id"] for k in ("processed", "delivered")}
    assert len(ok_ids) == 1

    statuses = {m["to"]: m["status"] for m in sandbox.messages()}
    assert statuses == {"ok@example.com": "delivered", "bounce+1@example.com": "bounce"}
    callbacks = sandbox.wait_until(
        lambda: (c := sandbox.stats()["callbacks"])["events_sent"] == 4 and c,
        what="callback stats",
    )
    assert callbacks["pending"] == 0
    assert callbacks["failures"] == 0


def test_tampered_callback_fails_verification(
    sg: SendGridAPIClient, receiver: WebhookReceiver, signing_key: tuple[Path, str]
) -> None:
    mail = simple_mail()
    mail.custom_arg = CustomArg("notification_id", "n-7")
    sg.send(mail)
    receiver.wait_for_events(1)
    original = receiver.snapshot()[0]
    public_key = signing_key[1]
    assert verify(original, public_key)

    tampered_body = original.body.replace(b"n-7", b"n-8")
    assert tampered_body != original.body
    assert not verify(Received(original.headers, tampered_body), public_key)

    old_timestamp = str(int(original.headers[TIMESTAMP_HEADER]) - 600)
    assert not verify(
        Received({**original.headers, TIMESTAMP_HEADER: old_timestamp}, original.body),
        public_key,
    )
    stripped = original.body.rstrip(b"\r\n")  # a receiver must verify the raw body
    assert not verify(Received(original.headers, stripped), public_key)


def test_failed_callback_batch_is_retried_and_resigned(
    sandbox: SandboxProcess,
    sg: SendGridAPIClient,
    receiver: WebhookReceiver,
    signing_key: tuple[Path, str],
) -> None:
    receiver.fail_next = 1  # first POST gets a 500 and is retried after 0.5 s
    sg.send(simple_mail())

    callbacks = sandbox.wait_until(
        lambda: (c := sandbox.stats()["callbacks"])["events_sent"] == 2 and c["pending"] == 0 and c,
        what="callbacks drained",
    )
    assert callbacks["failures"] == 1
    # Every answer is counted by its status class: the 500, then the 2xx of each batch.
    assert callbacks["answers_5xx"] == 1
    assert callbacks["answers_2xx"] == callbacks["batches_sent"] >= 1
    assert callbacks["answers_4xx"] == callbacks["answers_none"] == 0

    failed, *succeeded = receiver.snapshot()
    # The failed batch is re-sent with the very same body, freshly signed. Other batches
    # may overtake a retrying one (events can arrive out of order, as with SendGrid).
    [retry] = [r for r in succeeded if r.body == failed.body]
    assert retry.headers[SIGNATURE_HEADER] != failed.headers[SIGNATURE_HEADER]
    assert all(verify(r, signing_key[1]) for r in (failed, *succeeded))
    assert sorted(e["event"] for r in succeeded for e in r.events) == ["delivered", "processed"]


def test_callback_4xx_is_dropped_without_retry(
    sandbox: SandboxProcess, sg: SendGridAPIClient, receiver: WebhookReceiver
) -> None:
    receiver.fail_next, receiver.fail_status = 100, 403
    sg.send(simple_mail())
    callbacks = sandbox.wait_until(
        lambda: (c := sandbox.stats()["callbacks"])["dropped"] == 2 and c,
        what="both events dropped",
    )
    assert callbacks["events_sent"] == 0
    assert callbacks["failures"] == len(receiver.snapshot())


# -- inspection --------------------------------------------------------------------


def test_inspection_endpoints(sandbox: SandboxProcess, sg: SendGridAPIClient) -> None:
    sg.send(simple_mail(subject="<script>alert(1)</script>"))

    with urllib.request.urlopen(sandbox.url + "/healthz", timeout=5) as resp:
        assert json.load(resp) == {"status": "ok"}

    with urllib.request.urlopen(sandbox.url + "/", timeout=5) as resp:
        page = resp.read().decode()
        assert resp.headers["Content-Type"].startswith("text/html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in page
    assert 'http-equiv="refresh"' in page

    for path, code in (("/sandbox/messages/nope", 404), ("/sandbox/messages?bogus=1", 400)):
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(sandbox.url + path, timeout=5)
        assert excinfo.value.code == code

    stats = sandbox.stats()
    assert set(stats) >= {
        "requests",
        "accepted",
        "rejected",
        "aborted",
        "by_status",
        "callbacks",
        "per_second",
    }
    assert set(stats["callbacks"]) >= {"batches_sent", "events_sent", "failures", "pending",
                                       "answers_2xx", "answers_4xx", "answers_5xx", "answers_none"}


# -- CLI -------------------------------------------------------------------------


def test_keygen_and_pubkey_round_trip(tmp_path: Path) -> None:
    key_file = tmp_path / "signing.pem"
    first = run_cli("keygen", "--out", str(key_file))
    assert first.returncode == 0, first.stderr
    public_key = first.stdout.strip()
    assert "\n" not in public_key
    assert "BEGIN" not in public_key
    assert len(base64.b64decode(public_key)) == 91  # DER SubjectPublicKeyInfo, P-256
    EventWebhook().convert_public_key_to_ecdsa(public_key)  # loads as SendGrid would

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    pem = key_file.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")

    again = run_cli("keygen", "--out", str(key_file))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == public_key
    assert key_file.read_bytes() == pem  # never overwritten

    shown = run_cli("pubkey", "--key-file", str(key_file))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == public_key

    missing = run_cli("pubkey", "--key-file", str(tmp_path / "missing.pem"))
    assert missing.returncode != 0


def test_sandbox_process_startup_failure_is_reported() -> None:
    with pytest.raises(RuntimeError, match="exited with code"):
        SandboxProcess(SANDBOX_SENDGRID_SIGNING_KEY_FILE="/nonexistent/key.pem").start()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
