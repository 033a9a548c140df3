"""Single sends gathered into shared dispatch tasks (apps/notifications/enqueue.py,
"Gathering"): one task per window instead of one per send, and nothing left behind when a
window overflows, its task is lost, or its task cannot be published."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.utils import timezone

from apps.core.tasks import publications_publish
from apps.notifications.enqueue import GATHER_LIST_KEY, GATHER_WINDOW_KEY
from apps.notifications.models import Delivery
from apps.notifications.relay import relay_sweep
from apps.notifications.tasks import deliveries_dispatch_task

pytestmark = pytest.mark.django_db

SEND = "/api/v1/notifications"


@pytest.fixture
def broker(settings: Any) -> redis.Redis:
    settings.DISPATCH_GATHER_WINDOW_MS = 50
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()
    return client


def messages(broker: redis.Redis, queue: str) -> list[tuple[list[Any], dict[str, Any]]]:
    """The (args, kwargs) of the task messages waiting on a queue, oldest first."""
    out = []
    for raw in reversed(broker.lrange(queue, 0, -1)):  # kombu LPUSHes, workers pop the right end
        args, kwargs, _ = json.loads(base64.b64decode(json.loads(raw)["body"]))
        out.append((args, kwargs))
    return out


def send(api: Any, name: str, **extra: Any) -> str:
    response = api.post(SEND, {"recipients": [{"id": name, "email": f"{name}@example.com"}],
                               "template_id": "welcome", "variables": {"name": name}, **extra},
                        format="json")
    assert response.status_code == 202, response.json()
    return str(response.json()["deliveries"][0]["id"])


def run(message: tuple[list[Any], dict[str, Any]]) -> dict[str, Any]:
    """What the worker does with a message: the task, then what it asked to publish."""
    args, kwargs = message
    return deliveries_dispatch_task(*args, **kwargs)


def test_single_sends_of_one_window_share_one_task_that_sends_them_all(
    api: Any, email_template: Any, broker: redis.Redis, clean_sandbox: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        ids = [send(api, f"u{i}") for i in range(3)]

    [message] = messages(broker, "normal")
    assert message[0] == [[]] and message[1]["gather"]["priority"] == "normal"
    assert [raw.decode() for raw in broker.lrange(GATHER_LIST_KEY.format(priority="normal"), 0, -1)] == ids

    result = run(message)

    assert result["claimed"] == 3 and result["sent"] == 3
    assert set(Delivery.objects.filter(id__in=ids).values_list("status", flat=True)) <= {"sent", "delivered"}
    assert sorted(m["to"] for m in clean_sandbox.messages()) == [f"u{i}@example.com" for i in range(3)]
    # The window closed with the list emptied: the next send opens a new one, with its own task.
    assert not broker.exists(GATHER_WINDOW_KEY.format(priority="normal"))
    with django_capture_on_commit_callbacks(execute=True):
        later = send(api, "u9")
    [_, again] = messages(broker, "normal")
    assert run(again)["sent"] == 1
    assert Delivery.objects.get(id=later).status in ("sent", "delivered")


def test_the_task_waits_for_its_window_to_close(
    api: Any, email_template: Any, broker: redis.Redis, clean_sandbox: Any,
    django_capture_on_commit_callbacks: Any, settings: Any,
) -> None:
    settings.DISPATCH_GATHER_WINDOW_MS = 300
    with django_capture_on_commit_callbacks(execute=True):
        send(api, "first")
    [message] = messages(broker, "normal")
    until = message[1]["gather"]["until"]

    run(message)

    assert time.time() >= until  # it sent nothing before the window closed


def test_critical_sends_are_never_gathered(
    api: Any, email_template: Any, broker: redis.Redis, django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        ids = [send(api, f"u{i}", priority="critical") for i in range(2)]

    assert [args[0] for args, _ in messages(broker, "critical")] == [[i] for i in ids]
    assert not broker.exists(GATHER_LIST_KEY.format(priority="critical"))


def test_more_than_a_chunk_in_one_window_continues_in_another_task(
    api: Any, email_template: Any, broker: redis.Redis, clean_sandbox: Any,
    django_capture_on_commit_callbacks: Any, settings: Any,
) -> None:
    settings.DISPATCH_CHUNK_SIZE = 2
    with django_capture_on_commit_callbacks(execute=True):
        ids = [send(api, f"u{i}", priority="low") for i in range(5)]
    [first] = messages(broker, "low")

    with django_capture_on_commit_callbacks(execute=True):
        assert run(first)["claimed"] == 2
    # Three ids were left: the task published another gathering task before it sent.
    [_, second] = messages(broker, "low")
    assert second[1]["gather"]["priority"] == "low"
    with django_capture_on_commit_callbacks(execute=True):
        assert run(second)["claimed"] == 2
    [_, _, third] = messages(broker, "low")
    with django_capture_on_commit_callbacks(execute=True):
        assert run(third)["claimed"] == 1
    assert len(messages(broker, "low")) == 3  # the last one emptied the list: no more tasks
    assert Delivery.objects.filter(id__in=ids, status="pending").count() == 0


def test_a_lost_gathering_task_leaves_its_deliveries_to_the_relay_sweeper(
    api: Any, email_template: Any, broker: redis.Redis, django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        ids = [send(api, f"u{i}") for i in range(2)]
    broker.delete("normal")  # the gathering task is lost (the list is still there)
    Delivery.objects.filter(id__in=ids).update(lease_until=timezone.now() - timedelta(seconds=1))

    report = relay_sweep()
    publications_publish(report.publications)

    assert report.requeued == 2
    assert sorted(i for args, _ in messages(broker, "normal") for i in args[0]) == sorted(ids)


def test_a_gathering_task_that_cannot_be_published_hands_its_window_to_the_sweeper(
    api: Any, email_template: Any, broker: redis.Redis, django_capture_on_commit_callbacks: Any,
) -> None:
    from celery_app import app

    previous = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:9/15"  # the task's publish fails; the list is up
    app._after_fork()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            delivery_id = send(api, "ada")
    finally:
        app.conf.broker_url = previous
        app._after_fork()

    # The window is closed and emptied, and the delivery's lease ended: the next sweep
    # publishes it, and the next send opens a window of its own.
    assert not broker.exists(GATHER_WINDOW_KEY.format(priority="normal"))
    assert not broker.exists(GATHER_LIST_KEY.format(priority="normal"))
    report = relay_sweep()
    publications_publish(report.publications)
    assert report.requeued == 1
    assert [args[0] for args, _ in messages(broker, "normal")] == [[delivery_id]]


def test_gathering_off_publishes_one_task_per_send(
    api: Any, email_template: Any, broker: redis.Redis, django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    settings.DISPATCH_GATHER_WINDOW_MS = 0
    with django_capture_on_commit_callbacks(execute=True):
        ids = [send(api, f"u{i}") for i in range(2)]

    assert [args[0] for args, _ in messages(broker, "normal")] == [[i] for i in ids]


def test_what_a_gathering_task_took_gets_its_own_message_when_the_database_fails(
    api: Any, email_template: Any, broker: redis.Redis, django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL drops out after the task took the window's ids: the task's retry re-reads
    its own message, which names none of them, so they are published on their own (a second
    later) instead of waiting for their lease. (The chaos run's PostgreSQL scenario is the
    real outage: `make chaos`.)"""
    from django.db import OperationalError

    from apps.notifications import dispatch

    with django_capture_on_commit_callbacks(execute=True):
        ids = [send(api, f"u{i}") for i in range(2)]
    [message] = messages(broker, "normal")

    def down(ids: Any) -> Any:
        raise OperationalError("the server closed the connection")

    monkeypatch.setattr(dispatch, "_claim", down)
    with pytest.raises(OperationalError):
        run(message)

    [_, retry] = messages(broker, "normal")
    assert sorted(retry[0][0]) == sorted(ids)
    assert not broker.exists(GATHER_LIST_KEY.format(priority="normal"))
