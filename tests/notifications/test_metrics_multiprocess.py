"""Prometheus across processes, as `make run` runs them: gunicorn and a Celery worker share a
PROMETHEUS_MULTIPROC_DIR, and the web process' /metrics shows what the worker counted (the
sent delivery) next to what the web process counted (the accepted one)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from apps.notifications.models import Delivery
from tests.factories import ClientFactory, TemplateFactory, api_key_for
from tests.support.processes import GunicornProcess, wait_for
from tests.support.sandbox import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def scrape(web: GunicornProcess) -> str:
    with urllib.request.urlopen(f"{web.url}/metrics", timeout=10) as response:
        return str(response.read().decode())


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in the exposition text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


def test_a_delivery_sent_by_a_worker_shows_in_the_web_processes_metrics(
    tmp_path: Path, worker_env: dict[str, str], clean_sandbox: Any, start_worker: Any
) -> None:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    start_worker(env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    web = GunicornProcess({**worker_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                          port=free_port()).start()
    try:
        wait_for(lambda: _answers(web), timeout=30, message=f"gunicorn up: {web.log_text()}")
        tenant = ClientFactory()
        TemplateFactory(client=tenant, key="welcome")
        request = urllib.request.Request(
            f"{web.url}/api/v1/notifications", method="POST",
            data=json.dumps({"recipients": [{"id": "ada", "email": "ada@example.com"}],
                             "template_id": "welcome", "variables": {"name": "Ada"}}).encode(),
            headers={"Authorization": f"Bearer {api_key_for(tenant)}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202

        wait_for(lambda: Delivery.objects.filter(client=tenant, sent_at__isnull=False).exists(),
                 timeout=60, message="the worker sent it")
        def counted() -> str | None:
            text = scrape(web)
            sent = sample(text, "notifyhub_deliveries_total", channel="email",
                          provider="sendgrid", status="sent")
            return text if sent else None

        text = wait_for(counted, timeout=15, message="the worker's counter in the web's /metrics")
        assert sample(text, "notifyhub_deliveries_total", channel="email", provider="sendgrid",
                      status="sent") == 1.0
        assert sample(text, "notifyhub_accepted_deliveries_total", channel="email",
                      priority="normal") == 1.0
        assert sample(text, "notifyhub_provider_calls_total", provider="sendgrid",
                      outcome="sent") == 1.0
        assert any(p.name.startswith("counter_") for p in metrics_dir.iterdir())
    finally:
        web.stop()


def _answers(web: GunicornProcess) -> bool:
    try:
        scrape(web)
    except OSError:
        return False
    return True
