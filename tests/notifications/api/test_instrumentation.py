"""Prometheus metrics recorded by dispatch/receipts hooks and by the API."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from apps.notifications import instrumentation
from apps.notifications.providers.base import SendResult


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_outcome_rows_count_deliveries_and_accept_to_sent_latency() -> None:
    now = timezone.now()
    delivery = SimpleNamespace(id="d1", channel="sms", created_at=now - timedelta(seconds=2))
    other = SimpleNamespace(id="d2", channel="sms", created_at=now)
    before = sample("notifyhub_deliveries_total", channel="sms", provider="twilio_sms", status="sent")
    failed = sample("notifyhub_deliveries_total", channel="sms", provider="twilio_sms", status="failed")
    latency = sample("notifyhub_delivery_latency_seconds_sum", channel="sms")

    instrumentation.observe_outcomes(
        [{"id": "d1", "status": "sent", "event": "sent", "provider": "twilio_sms"},
         {"id": "d2", "status": "failed", "event": "failed", "provider": "twilio_sms"},
         {"id": "d2", "status": "queued", "event": "deferred", "provider": ""}],
        [delivery, other], now)

    assert sample("notifyhub_deliveries_total", channel="sms", provider="twilio_sms",
                  status="sent") == before + 1
    assert sample("notifyhub_deliveries_total", channel="sms", provider="twilio_sms",
                  status="failed") == failed + 1
    assert sample("notifyhub_delivery_latency_seconds_sum", channel="sms") == pytest.approx(latency + 2)


def test_receipts_count_the_status_they_moved_to() -> None:
    before = sample("notifyhub_deliveries_total", channel="email", provider="sendgrid", status="delivered")
    instrumentation.observe_receipts([SimpleNamespace(status="delivered", channel="email",
                                                      provider="sendgrid")])
    assert sample("notifyhub_deliveries_total", channel="email", provider="sendgrid",
                  status="delivered") == before + 1


def test_timed_send_counts_every_provider_call_by_outcome() -> None:
    class Provider:
        name = "fake_provider"

        def __init__(self, result: Any) -> None:
            self.result = result

        def send(self, message: Any) -> Any:
            if isinstance(self.result, Exception):
                raise self.result
            return self.result

    instrumentation.timed_send(Provider(SendResult.sent("fake_provider", "m1")), None)
    instrumentation.timed_send(Provider(SendResult.retryable("fake_provider", "http_503", "x")), None)
    with pytest.raises(RuntimeError):
        instrumentation.timed_send(Provider(RuntimeError("boom")), None)

    for outcome in ("sent", "retryable", "exception"):
        assert sample("notifyhub_provider_calls_total", provider="fake_provider", outcome=outcome) == 1
    assert sample("notifyhub_provider_call_seconds_count", provider="fake_provider") == 3


def test_a_broken_metric_never_breaks_the_caller() -> None:
    instrumentation.observe_outcomes([{"id": "x", "status": "sent"}], [object()])  # no channel


@pytest.mark.django_db
def test_accepted_deliveries_are_counted_and_exposed_at_metrics(
    api: Any, email_template: Any, client: Any
) -> None:
    before = sample("notifyhub_accepted_deliveries_total", channel="email", priority="low")
    api.post("/api/v1/notifications/bulk", {"notifications": [
        {"recipients": [{"id": f"u{i}", "email": f"u{i}@example.com"}], "template_id": "welcome",
         "variables": {"name": "x"}, "priority": "low"} for i in range(3)]}, format="json")

    assert sample("notifyhub_accepted_deliveries_total", channel="email", priority="low") == before + 3
    exposed = client.get("/metrics").content.decode()
    for name in ("notifyhub_accepted_deliveries_total", "notifyhub_deliveries_total",
                 "notifyhub_delivery_latency_seconds", "notifyhub_provider_calls_total",
                 "notifyhub_provider_call_seconds", "notifyhub_api_limit_rejections_total"):
        assert name in exposed
