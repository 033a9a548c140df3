"""Correlation ids: the request id goes into the headers of every task message published while
handling a request (or running a task), and a task's log lines carry the id its message
brought. Messages are read back from the test broker (Redis) as a worker would receive them."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings

from apps.core.logging import RequestIdFilter, request_id_var
from celery_app import app

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
