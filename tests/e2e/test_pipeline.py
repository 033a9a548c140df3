"""End to end with real processes: API → PostgreSQL → Redis → Celery worker → SendGrid SDK →
sandbox → signed Event Webhook → live server → `delivered`. Nothing is mocked."""

from __future__ import annotations

import collections
import time
from typing import Any

import pytest
import redis
from rest_framework.test import APIClient

from apps.notifications.models import Delivery, DeliveryEvent, Notification
from tests.factories import ClientFactory, TemplateFactory, api_key_for
from tests.support.processes import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def tenant_api() -> tuple[Any, APIClient]:
    tenant = ClientFactory()
    TemplateFactory(client=tenant, key="welcome")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(tenant)}")
    return tenant, api


def statuses(notification_id: str) -> collections.Counter[str]:
    return collections.Counter(
        Delivery.objects.filter(notification_id=notification_id).values_list("status", flat=True)
    )


def test_a_notification_goes_from_the_api_to_delivered_through_the_signed_callback(
    tenant_api: tuple[Any, APIClient], clean_sandbox: Any, start_worker: Any
) -> None:
    _, api = tenant_api
    start_worker()
    response = api.post("/api/v1/notifications", {
        "recipients": [{"id": "ada", "email": "ada@example.com"},
                       {"id": "bob", "email": "bounce@example.com"}],
        "template_id": "welcome", "variables": {"name": "Ada"}, "priority": "high",
    }, format="json")
    assert response.status_code == 202
    notification_id = response.json()["id"]

    wait_for(lambda: api.get(f"/api/v1/notifications/{notification_id}/status").json()["counts"]
             == {"delivered": 1, "bounced": 1}, timeout=60, message="both receipts")

    body = api.get(f"/api/v1/notifications/{notification_id}").json()
    by_recipient = {d["recipient"]: d for d in body["deliveries"]}
    assert by_recipient["ada"]["status"] == "delivered"
    assert by_recipient["bob"]["status"] == "bounced"
    assert by_recipient["bob"]["error_message"].startswith("550")
    assert body["status"] == "partially_failed"
    events = [e["event"] for e in by_recipient["ada"]["timeline"]]
    assert events[:3] == ["accepted", "claimed", "sent"]
    assert "delivered" in events
    [message] = clean_sandbox.messages(to="ada@example.com")
    assert message["subject"] == "Hello Ada"
    assert by_recipient["ada"]["provider_message_id"] == message["message_id"]


def test_critical_sends_are_served_by_the_critical_worker_alone(
    tenant_api: tuple[Any, APIClient], clean_sandbox: Any, start_worker: Any
) -> None:
    _, api = tenant_api
    start_worker(queues="critical", name="critical")
    critical = api.post("/api/v1/notifications", {
        "recipients": [{"id": "otp", "email": "otp@example.com"}], "template_id": "welcome",
        "variables": {"name": "x"}, "priority": "critical"}, format="json").json()
    bulk = api.post("/api/v1/notifications", {
        "recipients": [{"id": "promo", "email": "promo@example.com"}], "template_id": "welcome",
        "variables": {"name": "x"}, "priority": "low"}, format="json").json()
    wait_for(lambda: statuses(critical["id"])["delivered"] == 1, timeout=30, message="OTP delivered")
    assert statuses(bulk["id"]) == {"pending": 1}  # no low-priority worker runs


def test_a_lost_broker_message_is_sent_by_the_relay_sweeper(
    tenant_api: tuple[Any, APIClient], clean_sandbox: Any, start_worker: Any, settings: Any
) -> None:
    _, api = tenant_api
    settings.RELAY_REQUEUE_AFTER_SECONDS = 1
    response = api.post("/api/v1/notifications", {
        "recipients": [{"id": "ada", "email": "ada@example.com"}], "template_id": "welcome",
        "variables": {"name": "x"}}, format="json").json()
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()  # the broker loses the message

    start_worker(beat=True, env={"RELAY_SWEEP_INTERVAL_SECONDS": "1"})

    wait_for(lambda: statuses(response["id"])["delivered"] == 1, timeout=60, message="recovered")
    assert len(clean_sandbox.messages(to="ada@example.com")) == 1


def test_sigkill_mid_batch_loses_nothing_and_sends_nothing_twice(
    tenant_api: tuple[Any, APIClient], clean_sandbox: Any, start_worker: Any
) -> None:
    """A worker is SIGKILLed while a batch is in flight at the provider. Every delivery still
    ends `delivered`, and the sandbox holds exactly one message per delivery."""
    _, api = tenant_api
    total = 300
    # ~80 calls/s (2 processes x 4 threads, 100 ms each): the batch takes ~4 s, so the kill
    # below lands well inside it.
    clean_sandbox.control(latency_ms=100)
    worker_env = {"DELIVERY_LEASE_SECONDS": "4", "DISPATCH_CONCURRENCY": "4",
                  "RELAY_SWEEP_INTERVAL_SECONDS": "1", "DISPATCH_CHUNK_SIZE": "100"}
    first = start_worker(env=worker_env, name="doomed")
    response = api.post("/api/v1/notifications", {
        "recipients": [{"id": f"u{i}", "email": f"u{i}@example.com"} for i in range(total)],
        "template_id": "welcome", "variables": {"name": "x"}}, format="json")
    notification_id = response.json()["id"]

    wait_for(lambda: len(clean_sandbox.messages()) >= 40, timeout=60, message="sending under way")
    # Hold every new provider call, let the calls already answered be recorded, then kill the
    # worker while its batch is in flight: no call is between "accepted" and "recorded".
    clean_sandbox.control(latency_ms=3000)
    time.sleep(0.5)
    first.kill()
    in_flight = Delivery.objects.filter(notification_id=notification_id, status="sending").count()
    assert in_flight > 0, "the kill should land mid-batch"
    clean_sandbox.control(latency_ms=0)

    start_worker(env=worker_env, beat=True, name="survivor")

    wait_for(lambda: statuses(notification_id)["delivered"] == total, timeout=120,
             message=f"all delivered; now {dict(statuses(notification_id))}")
    per_delivery = collections.Counter(
        m["custom_args"]["notifyhub_delivery_id"] for m in clean_sandbox.messages()
    )
    assert len(per_delivery) == total
    assert set(per_delivery.values()) == {1}
    assert DeliveryEvent.objects.filter(delivery__notification_id=notification_id,
                                        event="requeued").count() >= in_flight
    assert Notification.objects.get(id=notification_id).status == "completed"
