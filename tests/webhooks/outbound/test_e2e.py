"""End to end with real processes: API → worker → sandbox provider → signed receipt → live
server, and at each status change a signed webhook from the `webhooks` queue to the client's
receiver, verified with the Standard Webhooks reference library."""

from __future__ import annotations

import collections
from typing import Any

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from apps.webhooks.models import WebhookAttempt
from tests.factories import ClientFactory, TemplateFactory, api_key_for
from tests.sandbox.receiver import HttpReceiver
from tests.support.processes import wait_for

from .support import verified

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ALL_QUEUES = "critical,high,normal,low,maintenance,webhooks"


def test_a_send_reaches_the_clients_receiver_as_signed_events(
    clean_sandbox: Any, start_worker: Any, receiver: HttpReceiver
) -> None:
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    tenant = ClientFactory()
    TemplateFactory(client=tenant, key="welcome")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(tenant)}")
    created = api.post("/api/v1/webhooks", {"url": receiver.url("/notifyhub"),
                                            "events": ["delivery.sent", "delivery.delivered",
                                                       "notification.completed"]}, format="json")
    assert created.status_code == 201
    secret = created.json()["secret"]
    start_worker(queues=ALL_QUEUES)

    response = api.post("/api/v1/notifications", {
        "recipients": [{"id": "ada", "email": "ada@example.com"}], "template_id": "welcome",
        "variables": {"name": "Ada"}, "priority": "high", "metadata": {"order": "ORD-9"},
    }, format="json")
    assert response.status_code == 202
    notification_id = response.json()["id"]
    delivery_id = response.json()["deliveries"][0]["id"]

    requests = receiver.wait_for(3, timeout=20)
    payloads = [verified(secret, r) for r in requests]
    by_type = {p["type"]: p for p in payloads}
    assert set(by_type) == {"delivery.sent", "delivery.delivered", "notification.completed"}
    for name in ("delivery.sent", "delivery.delivered"):
        data = by_type[name]["data"]
        assert (data["delivery_id"], data["notification_id"]) == (delivery_id, notification_id)
        assert (data["recipient"], data["channel"], data["metadata"]) == ("ada", "email",
                                                                          {"order": "ORD-9"})
    assert by_type["delivery.delivered"]["data"]["provider_message_id"]
    completed = by_type["notification.completed"]["data"]
    assert (completed["notification_id"], completed["status"]) == (notification_id, "completed")
    # Each event once (the completion is not sent again when the delivered receipt arrives),
    # and every attempt logged.
    wait_for(lambda: WebhookAttempt.objects.filter(succeeded=True).count() == 3, timeout=5,
             message="three attempts logged")
    assert {r.headers["webhook-id"] for r in requests} == {
        str(i) for i in WebhookAttempt.objects.values_list("message_id", flat=True)}
    assert collections.Counter(p["type"] for p in (verified(secret, r)
                                                   for r in receiver.snapshot())) == {
        "delivery.sent": 1, "delivery.delivered": 1, "notification.completed": 1}
