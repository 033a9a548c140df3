"""`/metrics` shows what the pipeline holds now: broker depth per queue, the age of the oldest
delivery waiting for a worker per priority, open breakers and failing client webhook
endpoints (apps/notifications/state_metrics.py). deploy/prometheus/alerts.yml alerts on them."""

from __future__ import annotations

import re
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test import Client as DjangoClient
from django.utils import timezone

from apps.notifications import gate
from apps.notifications.models import Delivery
from apps.notifications.providers.registry import get_provider
from apps.webhooks.models import WebhookEndpoint
from apps.webhooks.outbound.signing import secret_generate
from tests.support.processes import GunicornProcess, wait_for
from tests.support.sandbox import free_port


def scrape() -> str:
    response = DjangoClient().get("/metrics")
    assert response.status_code == 200
    return response.content.decode()


def value(text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if match and ",".join(sorted((match.group(1) or "").split(","))).strip(",") == wanted:
            return float(match.group(2))
    return None


def send(api: Any, **extra: Any) -> str:
    response = api.post("/api/v1/notifications", {
        "recipients": [{"id": "ada", "email": "ada@example.com"}], "template_id": "welcome",
        "variables": {"name": "Ada"}, **extra}, format="json")
    assert response.status_code == 202, response.content
    return str(response.json()["id"])


def test_the_oldest_waiting_delivery_age_is_shown_per_priority(api: Any, email_template: Any) -> None:
    waiting = send(api, priority="high")
    Delivery.objects.filter(notification_id=waiting).update(
        status="queued", created_at=timezone.now() - timedelta(minutes=10))
    later = send(api, priority="low")  # due in an hour: not waiting yet
    Delivery.objects.filter(notification_id=later).update(
        status="queued", due_at=timezone.now() + timedelta(hours=1))

    text = scrape()

    assert 600 <= value(text, "notifyhub_queue_oldest_age_seconds", priority="high") < 700
    assert value(text, "notifyhub_queue_oldest_age_seconds", priority="low") == 0
    assert value(text, "notifyhub_queue_oldest_age_seconds", priority="critical") == 0


def test_broker_depth_is_shown_per_queue(db: None) -> None:
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("critical")
    broker.lpush("critical", "{}", "{}")
    try:
        text = scrape()
    finally:
        broker.delete("critical")

    assert value(text, "notifyhub_queue_depth", queue="critical") == 2
    assert value(text, "notifyhub_queue_depth", queue="maintenance") is not None


def test_without_a_broker_the_other_gauges_are_still_scraped(db: None, settings: Any) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"

    text = scrape()

    assert value(text, "notifyhub_queue_depth", queue="critical") is None
    assert value(text, "notifyhub_queue_oldest_age_seconds", priority="normal") == 0


def test_an_open_breaker_is_shown(db: None) -> None:
    breaker = gate.breaker_for(gate.account_name(get_provider("sendgrid")))
    breaker.reset()
    assert value(scrape(), "notifyhub_provider_breaker_open", channel="email",
                 provider="sendgrid") == 0
    try:
        for _ in range(settings.CIRCUIT_BREAKER["min_requests"]):
            breaker.record_failure()
        assert breaker.state() == "open"

        assert value(scrape(), "notifyhub_provider_breaker_open", channel="email",
                     provider="sendgrid") == 1
    finally:
        breaker.reset()


def test_failing_webhook_endpoints_are_counted_with_the_longest_failure(client_tenant: Any) -> None:
    def endpoint(**fields: Any) -> None:
        WebhookEndpoint.objects.create(client=client_tenant, url="https://example.com/h",
                                       secret=secret_generate(), **fields)

    endpoint()
    endpoint(failing_since=timezone.now() - timedelta(minutes=20))
    endpoint(failing_since=timezone.now() - timedelta(minutes=5))
    endpoint(failing_since=timezone.now() - timedelta(hours=5), disabled_at=timezone.now())

    text = scrape()

    assert value(text, "notifyhub_webhook_endpoints_failing") == 2
    assert 1200 <= value(text, "notifyhub_webhook_endpoint_failing_seconds") < 1300


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_gunicorn_in_multiprocess_mode_shows_the_state_gauges_next_to_the_counters(
        tmp_path: Path, worker_env: dict[str, str]) -> None:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    web = GunicornProcess({**worker_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                          port=free_port()).start()
    try:
        def scraped() -> str | None:
            try:
                with urllib.request.urlopen(f"{web.url}/metrics", timeout=10) as response:
                    return str(response.read().decode())
            except OSError:
                return None

        wait_for(scraped, timeout=30, message=f"gunicorn up: {web.log_text()}")
        text = scraped() or ""  # the HTTP counters now hold the first scrape's response
    finally:
        web.stop()

    assert value(text, "notifyhub_queue_depth", queue="critical") is not None
    assert value(text, "notifyhub_queue_oldest_age_seconds", priority="critical") == 0
    assert value(text, "notifyhub_webhook_endpoints_failing") == 0
    assert (value(text, "django_http_responses_total_by_status_view_method_total", status="200",
                  view="prometheus-django-metrics", method="GET") or 0) >= 1
