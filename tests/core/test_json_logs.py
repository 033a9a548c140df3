"""Structured logs: in production settings every line is one JSON object with time, level,
logger, message, request id, client, notification id, delivery id, task name and queue, masked
like the text lines (no address or number in any line); `make run` keeps the text lines."""

from __future__ import annotations

import io
import json
import logging
import urllib.error
import urllib.request
from typing import Any

import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory
from rest_framework.request import Request

from apps.clients.authentication import ApiKeyAuthentication
from apps.core.logging import (
    ContextFilter,
    JsonLineFormatter,
    RedactPIIFilter,
    RequestIdFilter,
    log_context,
    log_context_var,
    request_id_var,
)
from apps.core.middleware import RequestIdMiddleware
from apps.notifications.models import Delivery
from tests.core.test_deploy_check import run as run_with_production_settings
from tests.factories import ClientFactory, TemplateFactory, api_key_for
from tests.support.processes import GunicornProcess, QuietWorker, wait_for, web_is_up
from tests.support.sandbox import free_port

FIELDS = {"time", "level", "logger", "message", "request_id", "client", "notification_id",
          "delivery_id", "task", "queue"}


@pytest.fixture(autouse=True)
def _nothing_bound() -> Any:
    """Tests that authenticate outside a request (DRF's request factory) leave a client bound
    in this thread; each test here starts with none, as each request does."""
    token = log_context_var.set({})
    yield
    log_context_var.reset(token)


def json_logger() -> tuple[logging.Logger, io.StringIO]:
    """A logger wired as settings.LOGGING's console handler is with LOG_FORMAT=json."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    for f in (RequestIdFilter(), ContextFilter(), RedactPIIFilter()):
        handler.addFilter(f)
    handler.setFormatter(JsonLineFormatter())
    logger = logging.getLogger("tests.json_logs")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.INFO
    return logger, out


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_the_ids_of_the_work() -> None:
    logger, out = json_logger()
    token = request_id_var.set("req-123")
    try:
        with log_context(client="acme", notification_id="n-1"):
            logger.info("sent to %s", "ada@example.com", extra={"delivery_id": "d-1"})
        logger.warning("outside")
    finally:
        request_id_var.reset(token)

    first, second = lines(out)
    assert set(first) == FIELDS
    assert first["message"] == "sent to a***@example.com"
    assert (first["level"], first["logger"], first["request_id"]) == ("INFO", "tests.json_logs",
                                                                      "req-123")
    assert (first["client"], first["notification_id"], first["delivery_id"]) == ("acme", "n-1", "d-1")
    assert first["time"].startswith("20") and first["time"].endswith("+00:00")
    assert second["client"] is None and second["notification_id"] is None


def test_an_api_request_puts_its_request_id_and_client_on_its_own_lines_only(
        client_tenant: Any) -> None:
    """RequestIdMiddleware starts each request with nothing bound; API-key authentication
    binds the client."""
    logger, out = json_logger()
    raw_key = api_key_for(client_tenant)

    def view(request: HttpRequest) -> HttpResponse:
        ApiKeyAuthentication().authenticate(Request(request))
        logger.info("inside the request")
        return HttpResponse()

    RequestIdMiddleware(view)(RequestFactory().get(
        "/api/v1/notifications", HTTP_AUTHORIZATION=f"Bearer {raw_key}",
        HTTP_X_REQUEST_ID="req-abc"))
    logger.info("after it")

    inside, after = lines(out)
    assert (inside["request_id"], inside["client"]) == ("req-abc", client_tenant.slug)
    assert (after["request_id"], after["client"]) == (None, None)


def test_other_attributes_never_reach_the_line_and_exceptions_are_masked() -> None:
    """Django's request logger attaches the request (its repr holds the URL)."""
    logger, out = json_logger()
    try:
        raise ValueError("bad number +14155550123")
    except ValueError:
        logger.exception("failed", extra={"request": "<WSGIRequest: GET '/r/jane@x.io'>",
                                          "status_code": 500})

    (line,) = lines(out)
    assert set(line) == FIELDS | {"exc_info"}
    assert "14155550123" not in out.getvalue() and "jane@x.io" not in out.getvalue()
    assert "ValueError" in line["exc_info"]


def test_production_settings_write_json_and_make_run_writes_text() -> None:
    show = ("import django; django.setup(); from django.conf import settings; "
            "print(settings.LOG_FORMAT, settings.LOGGING['handlers']['console']['formatter'])")
    assert run_with_production_settings("-c", show).stdout.split() == ["json", "json"]
    assert settings.LOGGING["handlers"]["console"]["formatter"] == "plain"  # base and local
    from notifyhub.settings import local

    assert local.LOG_FORMAT == "text"


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_web_and_worker_write_only_json_lines_with_no_address_in_them(
    worker_env: dict[str, str], clean_sandbox: Any,
) -> None:
    env = {**worker_env, "LOG_FORMAT": "json"}
    worker = QuietWorker(env).start()
    web = GunicornProcess(env, port=free_port(), workers=1).start()
    email, phone = "dorothy.vaughan@example.com", "+14155550155"
    try:
        wait_for(lambda: web_is_up(web.url), timeout=30, message=f"gunicorn up: {web.log_text()}")
        tenant = ClientFactory(slug="json-logs")
        TemplateFactory(client=tenant, key="welcome", channels=["email", "sms"])
        request = urllib.request.Request(
            f"{web.url}/api/v1/notifications/{'0' * 8}-0000-0000-0000-{'0' * 12}", headers={
                "Authorization": f"Bearer {api_key_for(tenant)}", "X-Request-Id": "json-logs-1"})
        try:  # a 404: Django logs "Not Found" for it, in this request's context
            urllib.request.urlopen(request, timeout=10)
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
        send = urllib.request.Request(
            f"{web.url}/api/v1/notifications", method="POST", data=json.dumps({
                "recipients": [{"id": "json_reader", "email": email, "phone": phone}],
                "template_id": "welcome", "variables": {"name": "Dot"},
                "channels": ["email", "sms"]}).encode(),
            headers={"Authorization": f"Bearer {api_key_for(tenant)}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(send, timeout=10) as response:
            assert response.status == 202
        wait_for(lambda: Delivery.objects.filter(client=tenant, sent_at__isnull=False).count() == 2,
                 timeout=90, message=f"both sent: {worker.log_text()[-2000:]}")
    finally:
        web.stop()
        worker.stop()

    logs = {"web": web.log_text(), "worker": worker.log_text()}
    for name, text in logs.items():
        assert "dorothy.vaughan" not in text and "14155550155" not in text, name
        parsed = []
        for line in filter(None, text.splitlines()):
            if name == "worker" and line.startswith("worker: Warm shutdown"):
                continue  # celery prints this one to the terminal itself, not through logging
            try:
                parsed.append(json.loads(line))
            except ValueError:
                pytest.fail(f"{name}: not a JSON line: {line!r}")
        assert parsed and all(set(p) >= FIELDS for p in parsed), name
        logs[name] = parsed  # type: ignore[assignment]

    web_lines: list[dict[str, Any]] = logs["web"]  # type: ignore[assignment]
    assert {"gunicorn.error", "gunicorn.access", "django.request"} <= {p["logger"] for p in web_lines}
    worker_lines: list[dict[str, Any]] = logs["worker"]  # type: ignore[assignment]
    in_tasks = [p for p in worker_lines if p["task"]]
    assert in_tasks, "\n".join(map(str, worker_lines))
    assert {p["queue"] for p in in_tasks} >= {"normal"}
    assert all(p["message"].startswith(f"Task {p['task']}[") for p in in_tasks
               if p["logger"] == "celery.app.trace"), in_tasks
