"""Erasure after the real pipeline: API → worker → provider SDKs → sandbox → signed callbacks.
Afterwards no table and no log line (this process: API and callbacks; the worker's, at DEBUG)
holds the person's email, phone, WhatsApp number, device token or attribute values."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.notifications.models import Delivery
from tests.factories import ClientFactory, TemplateFactory, api_key_for
from tests.support.processes import wait_for

from .support import tables_containing

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PERSON = {
    "email": "bounce.ada.e2e7@example.org",  # the sandbox bounces bounce*@ addresses
    "phone": "+15005550001",  # Twilio's magic "invalid To": its error text names the number
    "whatsapp": "+14155550123",
    "token": "fcm-ada-e2e-token-9f8e7d6c",
    "first_name": "Augustaxq",
}


def test_erasure_after_real_sends_leaves_no_pii_in_rows_or_logs(
    clean_sandbox: Any, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tenant = ClientFactory()
    TemplateFactory(client=tenant, key="alert", channels=["email", "sms", "whatsapp", "push"],
                    version__sms_body="Code {{ code }}", version__whatsapp_body="Code {{ code }}",
                    version__push_title="Code {{ code }}")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(tenant)}")
    assert api.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/hooks"},
                    format="json").status_code == 201
    assert api.put("/api/v1/recipients/ada", {
        "email": PERSON["email"], "phone": PERSON["phone"], "whatsapp": PERSON["whatsapp"],
        "attributes": {"first_name": PERSON["first_name"]}}, format="json").status_code == 201
    assert api.post("/api/v1/recipients/ada/devices", {"token": PERSON["token"],
                                                       "platform": "android"},
                    format="json").status_code == 201
    assert api.post("/api/v1/preferences/ada/opt-out", {"category": "marketing"},
                    format="json").status_code == 200
    worker = start_worker(env={"LOG_LEVEL": "DEBUG"}, loglevel="DEBUG")

    sent = api.post("/api/v1/notifications", {
        "recipients": ["ada"], "template_id": "alert", "priority": "high",
        "variables": {"name": PERSON["first_name"], "code": "1234"}},
        format="json", HTTP_IDEMPOTENCY_KEY="e2e-1")
    assert sent.status_code == 202, sent.content
    later = api.post("/api/v1/notifications", {
        "recipients": ["ada"], "template_id": "alert", "variables": {"code": "1", "name": "x"},
        "channels": ["email"], "scheduled_at": (timezone.now() + timedelta(days=1)).isoformat()},
        format="json")
    assert later.status_code == 202, later.content

    def statuses() -> dict[str, str]:
        return dict(Delivery.objects.filter(notification_id=sent.json()["id"])
                    .values_list("channel", "status"))

    final = {"email": "bounced", "sms": "failed", "whatsapp": "delivered", "push": "sent"}
    wait_for(lambda: statuses() == final, timeout=90, message=f"final statuses: {statuses()}")
    before = {value: tables_containing(value) for value in PERSON.values()}
    assert "notifications_suppression" in before[PERSON["phone"]]
    # Twilio's error text names the number: it is stored masked, so it is not found even before
    assert "notifications_deliveryevent" not in before[PERSON["phone"]]

    def erased() -> Any:
        response = api.post("/api/v1/recipients/ada/erase")
        assert response.status_code in (200, 409), response.content
        return response if response.status_code == 200 else None

    response = wait_for(erased, timeout=30, message="erasure accepted")
    tombstone = response.json()["recipient"]

    assert Delivery.objects.get(notification_id=later.json()["id"]).status == "cancelled"
    wait_for(lambda: clean_sandbox.stats()["callbacks"]["pending"] == 0, timeout=10)
    assert {value: tables_containing(value) for value in PERSON.values()} == {
        value: {} for value in PERSON.values()}
    logs = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records).lower()
    worker_log = worker.log_text().lower()
    assert "dispatch" in worker_log and tombstone.lower() not in worker_log
    assert [v for v in PERSON.values() if v.lower() in logs] == []
    assert [v for v in PERSON.values() if v.lower() in worker_log] == []
