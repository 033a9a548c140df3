"""Correlation ids: the request id goes into the headers of every task message published while
handling a request (or running a task), and a task's log lines carry the id its message
brought. Messages are read back from the test broker (Redis) as a worker would receive them.
End to end: a send through gunicorn with a chosen X-Request-Id, a real worker's JSON lines and
the client webhook it caused all carry it."""

from __future__ import annotations

import io
import json
import logging
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings

from apps.core.logging import RequestIdFilter, request_id_var
from apps.notifications.models import Delivery
from apps.webhooks.models import WebhookMessage
from celery_app import app
from tests.factories import ClientFactory, TemplateFactory, api_key_for
from tests.sandbox.receiver import HttpReceiver
from tests.support.processes import wait_for
from tests.webhooks.outbound.support import make_endpoint

from .conftest import StartWebAndWorker

QUEUE = f"test-correlation-{uuid.uuid4().hex[:8]}"


@app.task(name="tests.correlation.child")
def child_task() -> None:
    logging.getLogger("tests.correlation").info("child ran")


@app.task(name="tests.correlation.parent")
def parent_task() -> None:
    logging.getLogger("tests.correlation").info("parent publishes")
    child_task.apply_async(queue=QUEUE)


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(QUEUE)
    yield client
    client.delete(QUEUE)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Lines of the test tasks' logger as `[request id] message` (the text format's field)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter("[%(request_id)s] %(message)s"))
    logger = logging.getLogger("tests.correlation")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield out
    logger.removeHandler(handler)


def published(broker: redis.Redis) -> list[dict[str, Any]]:
    """The headers of the messages waiting in the test queue, oldest first."""
    raw = broker.lrange(QUEUE, 0, -1)
    return [json.loads(message)["headers"] for message in reversed(raw)]


def test_a_task_published_during_a_request_carries_its_request_id(broker: redis.Redis) -> None:
    token = request_id_var.set("client-req-42")
    try:
        child_task.apply_async(queue=QUEUE)
    finally:
        request_id_var.reset(token)
    child_task.apply_async(queue=QUEUE)  # outside any request: no id to carry

    during, outside = published(broker)
    assert during["request_id"] == "client-req-42"
    assert "request_id" not in outside


def test_a_request_id_set_by_the_publisher_is_kept(broker: redis.Redis) -> None:
    token = request_id_var.set("from-the-request")
    try:
        child_task.apply_async(queue=QUEUE, headers={"request_id": "chosen-by-caller"})
    finally:
        request_id_var.reset(token)

    (headers,) = published(broker)
    assert headers["request_id"] == "chosen-by-caller"


def test_a_task_logs_with_the_id_its_message_brought_and_its_children_inherit_it(
    broker: redis.Redis, log_lines: io.StringIO,
) -> None:
    # As a worker runs it: the message's header, no request id in the process.
    parent_task.apply(headers={"request_id": "send-req-7"})

    assert log_lines.getvalue().splitlines() == ["[send-req-7] parent publishes"]
    (child,) = published(broker)
    assert child["request_id"] == "send-req-7"
    assert request_id_var.get() == "-"  # unbound when the task ended
    logging.getLogger("tests.correlation").info("after")
    assert log_lines.getvalue().splitlines()[-1] == "[-] after"


def test_a_task_published_without_a_request_id_is_its_own_origin(
    broker: redis.Redis, log_lines: io.StringIO,
) -> None:
    # Beat's tasks, commands: the task id is the request id of its lines and of its children
    # (the id the audit log records for rows a task writes).
    result = parent_task.apply()

    assert log_lines.getvalue().splitlines() == [f"[{result.id}] parent publishes"]
    (child,) = published(broker)
    assert child["request_id"] == result.id


def test_a_task_run_in_process_keeps_its_callers_request_id(log_lines: io.StringIO) -> None:
    token = request_id_var.set("caller-req")
    try:
        child_task.apply()
        assert request_id_var.get() == "caller-req"
    finally:
        request_id_var.reset(token)

    assert log_lines.getvalue().splitlines() == ["[caller-req] child ran"]


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_request_id_follows_the_send_into_the_worker_and_onto_the_clients_webhook(
    worker_env: dict[str, str], clean_sandbox: Any, receiver: HttpReceiver,
    web_and_worker: StartWebAndWorker,
) -> None:
    tenant = ClientFactory(slug="correlation")
    TemplateFactory(client=tenant, key="welcome")
    make_endpoint(tenant, receiver.url("/hooks"), events=["delivery.sent"])
    stack = web_and_worker({**worker_env, "LOG_FORMAT": "json"})
    web, worker = stack.web, stack.worker
    request_id = "checkout-4711.confirm"
    try:
        send = urllib.request.Request(
            f"{web.url}/api/v1/notifications", method="POST", data=json.dumps({
                "recipients": [{"id": "grace", "email": "grace@example.com"}],
                "template_id": "welcome", "variables": {"name": "Grace"}}).encode(),
            headers={"Authorization": f"Bearer {api_key_for(tenant)}",
                     "Content-Type": "application/json", "X-Request-Id": request_id})
        with urllib.request.urlopen(send, timeout=10) as response:
            assert response.status == 202
            assert response.headers["X-Request-Id"] == request_id
            notification_id = json.loads(response.read())["id"]
        [webhook] = receiver.wait_for(1, timeout=60)
        wait_for(lambda: WebhookMessage.objects.filter(status="succeeded").exists(), timeout=30,
                 message=f"webhook recorded: {worker.log_text()[-2000:]}")
    finally:
        stack.stop()  # the worker's log is complete

    # The client's webhook for the send carries the id the client chose.
    assert webhook.headers["X-Request-Id"] == request_id
    assert json.loads(webhook.body)["data"]["notification_id"] == notification_id
    assert Delivery.objects.get(notification_id=notification_id).sent_at is not None
    # Every line the worker logged while running the send's tasks (its dispatch task and the
    # webhook delivery task that one published) carries it too.
    lines = [json.loads(line) for line in worker.log_text().splitlines()
             if line.startswith("{")]
    by_task: dict[str, set[Any]] = {}
    for line in lines:
        if line["task"]:
            by_task.setdefault(line["task"], set()).add(line["request_id"])
    assert by_task["notifications.deliveries_dispatch_task"] == {request_id}, lines
    assert by_task["webhooks.webhook_messages_deliver_task"] == {request_id}, lines
    assert any(line["message"].startswith("Task notifications.deliveries_dispatch_task[")
               and "succeeded" in line["message"] and line["request_id"] == request_id
               for line in lines), lines
