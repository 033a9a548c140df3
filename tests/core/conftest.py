"""What the end-to-end tests of tests/core share (test_correlation.py, test_tracing.py): an
HTTP receiver (a client's webhook endpoint, an OTLP collector) and a gunicorn + Celery worker
pair started on a clean test broker, stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis
from django.conf import settings

from tests.sandbox.receiver import HttpReceiver
from tests.support.processes import GunicornProcess, QuietWorker, wait_for, web_is_up
from tests.support.sandbox import free_port


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver()
    yield server
    server.close()


@dataclass
class WebAndWorker:
    web: GunicornProcess
    worker: QuietWorker

    def stop(self) -> None:
        """Stops both (their logs are complete after it); teardown does it too."""
        self.web.stop()
        self.worker.stop()


StartWebAndWorker = Callable[..., WebAndWorker]


@pytest.fixture
def web_and_worker() -> Iterator[StartWebAndWorker]:
    """`start(env, port=None)`: the test broker emptied, then a worker on every sending queue
    (webhooks included) and a one-worker gunicorn with `env` (usually `worker_env` plus the
    test's own settings), returned once gunicorn answers its health check."""
    started: list[WebAndWorker] = []

    def start(env: dict[str, str], *, port: int | None = None) -> WebAndWorker:
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
        worker = QuietWorker(env, queues="critical,high,normal,low,webhooks").start()
        pair = WebAndWorker(GunicornProcess(env, port=port or free_port(), workers=1), worker)
        started.append(pair)
        pair.web.start()
        wait_for(lambda: web_is_up(pair.web.url), timeout=30,
                 message=f"gunicorn up: {pair.web.log_text()}")
        return pair

    yield start
    for pair in started:
        pair.stop()
