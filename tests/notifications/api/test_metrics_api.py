"""The metrics and operations endpoints: shape, numbers, and tenant isolation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from apps.notifications.models import Delivery

pytestmark = pytest.mark.django_db

SEND = "/api/v1/notifications"


def send(api: Any, count: int, prefix: str = "r") -> str:
    body = {"recipients": [{"id": f"{prefix}{i}", "email": f"{prefix}{i}@example.com"}
                           for i in range(count)],
            "template_id": "welcome", "variables": {"name": "x"}}
    response = api.post(SEND, body, format="json")
    assert response.status_code == 202
    return str(response.json()["id"])


def settle(notification_id: str, outcomes: list[tuple[str, str, float]]) -> None:
    """Gives the notification's deliveries (in order) a status, provider and accept → sent
    latency in seconds."""
    for delivery, (status, provider, seconds) in zip(
        Delivery.objects.filter(notification_id=notification_id).order_by("id"), outcomes, strict=True
    ):
        delivery.status = status
        delivery.provider = provider
        delivery.sent_at = delivery.created_at + timedelta(seconds=seconds) if seconds >= 0 else None
        delivery.save(update_fields=["status", "provider", "sent_at"])


def test_delivery_rates_count_your_deliveries_per_channel_and_status(
    api: Any, email_template: Any, other_api: Any
) -> None:
    mine = send(api, 4)
    settle(mine, [("delivered", "sendgrid", 1), ("delivered", "sendgrid", 1),
                  ("bounced", "sendgrid", 1), ("queued", "", -1)])
    theirs = send(other_api, 3)
    settle(theirs, [("failed", "sendgrid", -1)] * 3)

    response = api.get("/api/v1/metrics/delivery-rates", {"window": "1h"})

    assert response.status_code == 200
    body = response.json()
    assert body["window"] == "1h"
    assert body["overall"]["total"] == 4
    [email] = body["channels"]
    assert email["channel"] == "email"
    assert email["counts"] == {"delivered": 2, "bounced": 1, "queued": 1}
    assert email["rates"] == {"delivered": 0.5, "bounced": 0.25, "queued": 0.25}
    assert email["delivery_rate"] == pytest.approx(2 / 3, abs=1e-4)


def test_delivery_rates_default_to_24h_and_refuse_other_windows(api: Any) -> None:
    assert api.get("/api/v1/metrics/delivery-rates").json()["window"] == "24h"
    response = api.get("/api/v1/metrics/delivery-rates", {"window": "2d"})
    assert response.status_code == 400
    assert "window" in response.json()["error"]["fields"]


def test_old_deliveries_fall_out_of_the_window(api: Any, email_template: Any) -> None:
    notification_id = send(api, 1)
    Delivery.objects.filter(notification_id=notification_id).update(
        created_at=timezone.now() - timedelta(hours=2))
    body = api.get("/api/v1/metrics/delivery-rates", {"window": "1h"}).json()
    assert body["overall"]["total"] == 0
    assert body["channels"] == []
    assert api.get("/api/v1/metrics/delivery-rates", {"window": "24h"}).json()["overall"]["total"] == 1


def test_channel_performance_per_provider_with_latency(
    api: Any, email_template: Any, other_api: Any
) -> None:
    mine = send(api, 5)
    settle(mine, [("delivered", "sendgrid", 1), ("delivered", "sendgrid", 3), ("bounced", "sendgrid", 5),
                  ("failed", "smtp", -1), ("pending", "", -1)])
    theirs = send(other_api, 2)
    settle(theirs, [("delivered", "sendgrid", 100)] * 2)

    response = api.get("/api/v1/metrics/channel-performance", {"window": "24h"})

    assert response.status_code == 200
    rows = {(r["channel"], r["provider"]): r for r in response.json()["providers"]}
    assert set(rows) == {("email", "sendgrid"), ("email", "smtp")}
    sendgrid = rows[("email", "sendgrid")]
    assert (sendgrid["sent"], sendgrid["delivered"], sendgrid["failed"]) == (3, 2, 1)
    assert sendgrid["latency_ms"]["p50"] == pytest.approx(3000, abs=1)
    assert sendgrid["latency_ms"]["p95"] == pytest.approx(4800, abs=1)
    smtp = rows[("email", "smtp")]
    assert (smtp["sent"], smtp["failed"], smtp["latency_ms"]) == (0, 1, {"p50": None, "p95": None})


def test_system_status_reports_checks_queues_and_every_provider(api: Any) -> None:
    response = api.get("/api/v1/metrics/system-status")

    assert response.status_code == 200
    body = response.json()
    assert body["checks"] == {"database": "ok", "broker": "ok"}
    assert body["status"] in ("ok", "degraded")
    assert set(body["queues"]) == {"critical", "high", "normal", "low", "webhooks", "maintenance"}
    listed = {(p["channel"], p["provider"]) for p in body["providers"]}
    assert listed == {(c, p) for c, names in settings.CHANNEL_PROVIDERS.items() for p in names}
    sendgrid = next(p for p in body["providers"] if p["provider"] == "sendgrid")
    assert sendgrid["configured"] is True
    assert sendgrid["breaker"] in ("closed", "unknown")


def test_system_status_is_degraded_without_a_broker(api: Any, settings: Any) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    body = api.get("/api/v1/metrics/system-status").json()
    assert body["status"] == "degraded"
    assert body["checks"]["broker"] == "unavailable"
    assert body["queues"] == {}


def test_queue_status_shows_broker_depths_and_only_your_backlog(
    api: Any, email_template: Any, other_api: Any, django_capture_on_commit_callbacks: Any
) -> None:
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    with django_capture_on_commit_callbacks(execute=True):
        send(api, 3)
        send(other_api, 2)

    response = api.get("/api/v1/admin/queue-status")

    assert response.status_code == 200
    body = response.json()
    assert body["broker"] == "ok"
    depths = {q["name"]: q["depth"] for q in body["queues"]}
    # Both sends in one gathering window: one task (both clients': the broker is shared)
    assert depths["normal"] == 1
    assert body["total"] == 1
    assert body["backlog"] == {"normal": {"pending": 3}}  # published, not claimed yet


@pytest.mark.parametrize("path", ["/api/v1/metrics/delivery-rates",
                                  "/api/v1/metrics/channel-performance",
                                  "/api/v1/metrics/system-status", "/api/v1/admin/queue-status"])
def test_metrics_need_an_api_key(db: None, path: str) -> None:
    from rest_framework.test import APIClient

    response = APIClient().get(path)
    assert response.status_code == 401
