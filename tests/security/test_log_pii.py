"""No PII in any log: the web process as the Procfile runs it (gunicorn with
notifyhub/gunicorn.conf.py) and the provider sandbox, each given requests whose URLs, headers
and bodies carry addresses, phone numbers and external ids; their whole output is scanned.

The same gunicorn answers the errors it handles itself (a NUL byte in a header, an over-long
request line) in the API's JSON error format, tried with a raw socket."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any

import pytest

from apps.core.logging import mask_url
from apps.notifications.models import Delivery
from tests.factories import ClientFactory, TemplateFactory, api_key_for
from tests.support.processes import GunicornProcess, wait_for
from tests.support.sandbox import SandboxProcess, free_port

# What the requests below carry, in every spelling a log line could use.
SECRETS = ["someone@example.com", "someone%40example.com", "14155550166", "jane.doe",
           "14155550177", "ada.lovelace", "referer.person", "aud_secret_42", "grace.hopper",
           "14155550188", "14155550199"]


def _raw(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in
               (line.split(": ", 1) for line in lines[1:] if ": " in line)}
    if headers.get("transfer-encoding") == "chunked":
        chunks, rest = [], body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            if int(size, 16) == 0:
                break
            chunks.append(rest[:int(size, 16)])
            rest = rest[int(size, 16) + 2:]
        body = b"".join(chunks)
    return int(lines[0].split()[1]), headers, body


def _call(url: str, method: str = "GET", body: Any = None, **headers: str) -> int:
    request = urllib.request.Request(url, method=method, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _up(web: GunicornProcess) -> bool:
    try:
        return _call(f"{web.url}/api/v1/health") == 200
    except OSError:
        return False


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_gunicorn_answers_its_own_errors_in_json_and_logs_no_pii(
    worker_env: dict[str, str],
) -> None:
    web = GunicornProcess(worker_env, port=free_port(), workers=1).start()
    try:
        wait_for(lambda: _up(web), timeout=30, message=f"gunicorn up: {web.log_text()}")
        tenant = ClientFactory()
        auth = {"Authorization": f"Bearer {api_key_for(tenant)}"}
        # Errors gunicorn answers before Django: JSON, never its HTML page.
        for raw, status in [
            (b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Trace: a\x00b\r\n\r\n", 400),
            (b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Trace: a\x01b\r\n\r\n", 400),
            (b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400),
            (b"GET /api/v1/health?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
            (b"\x00GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", 400),
            # Django's side: a Content-Length over the limit is refused before the body is read.
            (b"POST /api/v1/webhooks/sendgrid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
             b"Content-Type: application/json\r\nContent-Length: 999999999\r\n\r\n[]", 413),
        ]:
            code, headers, body = _raw(web.port, raw)
            assert code == status, (raw[:60], code, body)
            assert headers.get("content-type") == "application/json", (raw[:60], headers, body)
            assert set(json.loads(body)["error"]) == {"code", "message", "fields"}, body
        # Requests whose URLs carry addresses and external ids.
        assert _call(f"{web.url}/admin/recipients/recipient/?q=someone@example.com") in (200, 302)
        assert _call(f"{web.url}/admin/recipients/recipient/?q=someone%40example.com&o=1") in (
            200, 302)
        assert _call(f"{web.url}/admin/recipients/recipient/?q=%2B14155550166") in (200, 302)
        assert _call(f"{web.url}/api/v1/recipients/jane.doe@example.com", "PUT",
                     {"email": "jane.doe@example.com", "phone": "+14155550199"}, **auth) == 201
        assert _call(f"{web.url}/api/v1/recipients/%2B14155550177", **auth) == 404
        assert _call(f"{web.url}/api/v1/recipients/aud_secret_42", **auth) == 404
        assert _call(f"{web.url}/api/v1/notifications?recipient=ada.lovelace@example.com",
                     **auth) == 200
        assert _call(f"{web.url}/api/v1/health",
                     Referer=f"{web.url}/admin/?q=referer.person@example.com") == 200
    finally:
        web.stop()

    log = web.log_text()
    assert '"GET /admin/recipients/recipient/?q=*** HTTP/1.1" 302' in log, log[-3000:]
    assert '"PUT /api/v1/recipients/*** HTTP/1.1" 201' in log, log[-3000:]
    assert [s for s in SECRETS if s in log] == [], log[-3000:]


def test_the_sandbox_logs_no_pii() -> None:
    with SandboxProcess(SANDBOX_LOG_LEVEL="DEBUG", SANDBOX_SENDGRID_CALLBACK_URL="",
                        SANDBOX_TWILIO_STATUS_CALLBACK_URL="") as sandbox:
        from sendgrid import SendGridAPIClient
        from sendgrid.helpers.mail import Mail

        sg = SendGridAPIClient(api_key="sandbox-sendgrid-key", host=sandbox.url)
        sg.send(Mail(from_email="noreply@example.org", to_emails="grace.hopper@example.com",
                     subject="Hi", plain_text_content="Hello"))
        sandbox.twilio_client(timeout=5).messages.create(
            to="+14155550188", from_="+14155550100", body="Hello")
        assert sandbox.messages(to="grace.hopper@example.com")
        assert sandbox.messages(to="+14155550188")
        _call(f"{sandbox.url}/no/such/+14155550188/grace.hopper@example.com")
        log = sandbox.log_text()

    assert "GET /_sandbox/messages?to=*** HTTP/1.1" in log or "?to=***" in log, log[-3000:]
    assert [s for s in SECRETS if s in log] == [], log[-3000:]


@pytest.mark.parametrize(("url", "masked"), [
    ("/admin/recipients/recipient/?q=someone@example.com", "/admin/recipients/recipient/?q=***"),
    ("/admin/recipients/recipient/12/change/?_changelist_filters=q%3Dx%40y.com",
     "/admin/recipients/recipient/12/change/?_changelist_filters=***"),
    ("/api/v1/recipients/jane@example.com/devices", "/api/v1/recipients/***/devices"),
    ("/api/v1/notifications/0d0bc317-d4d5-41e8-9ab2-88550a84092a?status=failed&cursor=cD0x",
     "/api/v1/notifications/0d0bc317-d4d5-41e8-9ab2-88550a84092a?status=failed&cursor=***"),
    ("/api/v1/recipients/12345", "/api/v1/recipients/***"),
    ("http://h:8000/admin/?q=a@b.co", "http://h:8000/admin/?q=***"),
    ("/static/admin/css/base.css", "/static/admin/css/base.css"),
    ("-", "-"),
])
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_an_end_to_end_send_leaves_no_address_in_any_processes_log(
    worker_env: dict[str, str], start_worker: Any, clean_sandbox: SandboxProcess,
) -> None:
    """web (gunicorn), a worker with embedded beat, and the sandbox: an email and an SMS sent
    to a recipient given inline, then looked up by address."""
    worker = start_worker(beat=True)
    web = GunicornProcess(worker_env, port=free_port(), workers=1).start()
    email, phone = "katherine.johnson@example.com", "+14155550144"
    try:
        wait_for(lambda: _up(web), timeout=30, message=f"gunicorn up: {web.log_text()}")
        tenant = ClientFactory()
        TemplateFactory(client=tenant, key="welcome", channels=["email", "sms"])
        auth = {"Authorization": f"Bearer {api_key_for(tenant)}"}
        assert _call(f"{web.url}/api/v1/notifications", "POST", {
            "recipients": [{"id": "e2e_reader", "email": email, "phone": phone}],
            "template_id": "welcome", "variables": {"name": "Kat"}, "channels": ["email", "sms"],
        }, **auth) == 202
        wait_for(lambda: Delivery.objects.filter(client=tenant, sent_at__isnull=False).count() == 2,
                 timeout=90, message=f"both sent: {worker.log_text()[-2000:]}")
        assert _call(f"{web.url}/api/v1/notifications?recipient={email}", **auth) == 200
        assert _call(f"{web.url}/admin/notifications/delivery/?q={email}") in (200, 302)
    finally:
        web.stop()

    logs = {"web": web.log_text(), "worker": worker.log_text(), "sandbox": clean_sandbox.log_text()}
    found = {name: [s for s in ("katherine.johnson", "14155550144", "katherine.johnson%40")
                    if s in text] for name, text in logs.items()}
    assert found == {"web": [], "worker": [], "sandbox": []}, {k: v[-2000:] for k, v in logs.items()}
    assert "sendgrid accepted" in logs["sandbox"] and "twilio accepted" in logs["sandbox"]
