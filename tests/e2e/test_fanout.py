"""A large send accepted as a job, end to end with real processes: the API answers before any
delivery exists, the worker expands the job slice by slice and sends every message once,
through the sandbox and its signed receipts, to `delivered`."""

from __future__ import annotations

import collections
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.notifications.models import AcceptJob, AcceptJobSlice, Delivery
from tests.factories import ClientFactory, TemplateFactory, api_key_for
from tests.support.processes import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

N = 150


def test_a_fanned_out_send_is_delivered_once_to_every_recipient(
    settings: Any, clean_sandbox: Any, start_worker: Any
) -> None:
    settings.ACCEPT_FANOUT_MIN_DELIVERIES = 100
    settings.ACCEPT_FANOUT_FIRST_SLICE = 10
    settings.ACCEPT_FANOUT_SLICE = 50
    tenant = ClientFactory()
    TemplateFactory(client=tenant, key="welcome")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(tenant)}")
    start_worker()

    response = api.post("/api/v1/notifications", {
        "recipients": [{"id": f"f{i}", "email": f"f{i}@example.com"} for i in range(N)],
        "template_id": "welcome", "variables": {"name": "Fan"}}, format="json")

    assert response.status_code == 202, response.json()
    body = response.json()
    assert (body["expanding"], body["delivery_count"]) == (True, N)
    notification_id = body["id"]
    wait_for(lambda: api.get(f"/api/v1/notifications/{notification_id}/status").json()["counts"]
             == {"delivered": N}, timeout=90, message="every delivery delivered")

    status = api.get(f"/api/v1/notifications/{notification_id}/status").json()
    assert status["status"] == "completed"
    job = AcceptJob.objects.get()
    assert (job.cursor, job.slices, job.deliveries_created) == (4, 4, N)
    assert not AcceptJobSlice.objects.exists()
    sent_to = collections.Counter(m["to"] for m in clean_sandbox.messages())
    assert sent_to == {f"f{i}@example.com": 1 for i in range(N)}
    assert Delivery.objects.filter(notification_id=notification_id).count() == N
