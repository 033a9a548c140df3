"""Test keys through the API: what they create is marked test, they see only their own mode,
they are not charged to the daily quota, and no request body can change any of that."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.clients.quotas import deliveries_quota_used
from apps.clients.services import api_key_create
from apps.notifications.models import Delivery, Notification
from apps.recipients.models import Recipient
from apps.scheduling.models import RecurringSend

from .helpers import api_with_key

pytestmark = pytest.mark.django_db

SEND = "/api/v1/notifications"


def body(*emails: str, **extra: Any) -> dict[str, Any]:
    return {"recipients": [{"id": e.split("@")[0], "email": e} for e in emails],
            "template_id": "welcome", "variables": {"name": "x"}, **extra}


@pytest.fixture
def live(client_tenant: Any, email_template: Any) -> APIClient:
    return api_with_key(api_key_create(client=client_tenant, name="live")[1])


@pytest.fixture
def test(client_tenant: Any, email_template: Any) -> APIClient:
    return api_with_key(api_key_create(client=client_tenant, name="test", mode="test")[1])


def test_a_test_keys_send_is_marked_test_everywhere_it_shows(test: APIClient) -> None:
    accepted = test.post(SEND, body("ada@example.com"), format="json")
    assert accepted.status_code == 202, accepted.json()
    assert accepted.json()["test"] is True
    notification = Notification.objects.get(id=accepted.json()["id"])
    assert notification.is_test
    assert [d.is_test for d in Delivery.objects.filter(notification=notification)] == [True]
    assert test.get(f"{SEND}/{notification.id}").json()["test"] is True
    assert test.get(SEND).json()["results"][0]["test"] is True

    bulk = test.post(f"{SEND}/bulk", {"notifications": [body("bob@example.com")]}, format="json")
    assert bulk.status_code == 202 and bulk.json()["test"] is True
    assert Notification.objects.get(id=bulk.json()["notifications"][0]["id"]).is_test
    assert Delivery.objects.filter(is_test=False).count() == 0


def test_a_live_keys_send_is_live(live: APIClient) -> None:
    accepted = live.post(SEND, body("ada@example.com"), format="json").json()
    assert accepted["test"] is False
    assert not Notification.objects.get(id=accepted["id"]).is_test


@pytest.mark.parametrize("smuggled", [{"is_test": False}, {"test": False}, {"mode": "live"}])
def test_the_body_cannot_turn_a_test_send_into_a_live_one(test: APIClient, smuggled: dict) -> None:
    test.post(SEND, body("ada@example.com", **smuggled), format="json")
    test.post(f"{SEND}/bulk", {"notifications": [body("bob@example.com", **smuggled)]}, format="json")
    assert list(Notification.objects.values_list("is_test", flat=True)) == [True, True]
    assert not Delivery.objects.filter(is_test=False).exists()


@pytest.mark.parametrize("smuggled", [{"is_test": True}, {"test": True}, {"mode": "test"}])
def test_the_body_cannot_turn_a_live_send_into_a_test_one(live: APIClient, smuggled: dict) -> None:
    """A live send that claimed to be a test would skip the quota: it stays live."""
    live.post(SEND, body("ada@example.com", **smuggled), format="json")
    live.post(f"{SEND}/bulk", {"notifications": [body("bob@example.com", **smuggled)]}, format="json")
    assert list(Notification.objects.values_list("is_test", flat=True)) == [False, False]


def test_each_mode_sees_only_its_own_notifications(live: APIClient, test: APIClient) -> None:
    live_id = live.post(SEND, body("ada@example.com"), format="json").json()["id"]
    test_id = test.post(SEND, body("ada@example.com"), format="json").json()["id"]

    assert [n["id"] for n in live.get(SEND).json()["results"]] == [live_id]
    assert [n["id"] for n in test.get(SEND).json()["results"]] == [test_id]
    for api, other in ((live, test_id), (test, live_id)):
        assert api.get(f"{SEND}/{other}").status_code == 404
        assert api.get(f"{SEND}/{other}/status").status_code == 404
        assert api.put(f"{SEND}/{other}/cancel").status_code == 404
        assert api.delete(f"{SEND}/{other}").status_code == 404
    assert Notification.objects.count() == 2  # nothing was cancelled or deleted across modes
    assert not Delivery.objects.filter(status="cancelled").exists()
    assert test.put(f"{SEND}/{test_id}/cancel").status_code == 200


def test_retry_failed_redrives_only_the_keys_own_mode(live: APIClient, test: APIClient) -> None:
    live.post(SEND, body("ada@example.com"), format="json")
    test.post(SEND, body("ada@example.com"), format="json")
    Delivery.objects.update(status="failed")

    assert test.post("/api/v1/admin/retry-failed", {}, format="json").json() == {"redriven": 1}
    assert Delivery.objects.get(is_test=True).status == "queued"
    assert Delivery.objects.get(is_test=False).status == "failed"


def test_metrics_and_queue_backlog_are_per_mode(live: APIClient, test: APIClient) -> None:
    live.post(SEND, body("a@example.com", "b@example.com"), format="json")
    test.post(SEND, body("c@example.com"), format="json")
    assert live.get("/api/v1/metrics/delivery-rates").json()["overall"]["total"] == 2
    assert test.get("/api/v1/metrics/delivery-rates").json()["overall"]["total"] == 1
    assert test.get("/api/v1/admin/queue-status").json()["backlog"] == {"normal": {"pending": 1}}


def test_the_same_idempotency_key_in_both_modes_is_two_requests(live: APIClient, test: APIClient) -> None:
    headers = {"HTTP_IDEMPOTENCY_KEY": "order-42"}
    first_test = test.post(SEND, body("ada@example.com"), format="json", **headers)
    first_live = live.post(SEND, body("ada@example.com"), format="json", **headers)
    again_live = live.post(SEND, body("ada@example.com"), format="json", **headers)
    assert first_live.status_code == first_test.status_code == 202
    assert first_live.json()["id"] != first_test.json()["id"]
    assert first_live.json()["test"] is False
    assert again_live["Idempotent-Replayed"] == "true"
    assert again_live.json()["id"] == first_live.json()["id"]
    assert Notification.objects.count() == 2


def test_test_sends_are_not_charged_to_the_daily_quota(
    live: APIClient, test: APIClient, client_tenant: Any, settings: Any
) -> None:
    settings.DAILY_DELIVERY_QUOTA = 2
    for _ in range(3):
        assert test.post(SEND, body("a@example.com", "b@example.com"), format="json").status_code == 202
    assert test.post(f"{SEND}/bulk", {"notifications": [body("c@example.com")]},
                     format="json").status_code == 202
    assert deliveries_quota_used(client=client_tenant) == 0
    assert deliveries_quota_used(client=client_tenant, is_test=True) == 7
    # The live quota is untouched: the live key still has its 2 deliveries for today.
    assert live.post(SEND, body("a@example.com", "b@example.com"), format="json").status_code == 202
    refused = live.post(SEND, body("a@example.com"), format="json")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "quota_exceeded"


def test_test_sends_have_their_own_daily_cap(test: APIClient, client_tenant: Any, settings: Any) -> None:
    settings.TEST_MODE_DAILY_DELIVERY_QUOTA = 2
    assert test.post(SEND, body("a@example.com", "b@example.com"), format="json").status_code == 202
    refused = test.post(SEND, body("c@example.com"), format="json")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert "test-mode" in refused.json()["error"]["message"]
    assert deliveries_quota_used(client=client_tenant) == 0


def test_a_test_keys_segment_send_is_a_test_send(test: APIClient, client_tenant: Any) -> None:
    Recipient.objects.create(client=client_tenant, external_id="ada", email="ada@example.com",
                             attributes={"plan": "pro"})
    created = test.post("/api/v1/segments", {
        "key": "all", "name": "All",
        "definition": {"attribute": "plan", "op": "equals", "value": "pro"}}, format="json")
    assert created.status_code == 201, created.json()
    sent = test.post("/api/v1/segments/all/send", {"template_id": "welcome",
                                                   "variables": {"name": "x"}}, format="json")
    assert sent.status_code == 202, sent.json()
    assert list(Notification.objects.values_list("is_test", flat=True)) == [True]


def test_schedules_belong_to_the_mode_that_created_them(
    live: APIClient, test: APIClient, client_tenant: Any
) -> None:
    Recipient.objects.create(client=client_tenant, external_id="ada", email="ada@example.com")
    schedule = {"name": "Daily", "template_id": "welcome", "variables": {"name": "x"},
                "recipient_ids": ["ada"], "minute": "0", "hour": "9", "test": False, "is_test": False}
    created = test.post("/api/v1/schedules", schedule, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["test"] is True
    schedule_id = created.json()["id"]
    assert RecurringSend.objects.get(id=schedule_id).is_test

    # A live key can neither see, change, run nor delete it (and the reverse).
    assert live.get("/api/v1/schedules").json()["results"] == []
    assert live.get(f"/api/v1/schedules/{schedule_id}").status_code == 404
    assert live.put(f"/api/v1/schedules/{schedule_id}", {"hour": "10"}, format="json").status_code == 404
    assert live.post(f"/api/v1/schedules/{schedule_id}/run").status_code == 404
    assert live.delete(f"/api/v1/schedules/{schedule_id}").status_code == 404

    # Its runs are test sends.
    run = test.post(f"/api/v1/schedules/{schedule_id}/run")
    assert run.status_code == 202, run.json()
    assert Notification.objects.get(id=run.json()["notifications"][0]).is_test


def test_test_keys_cannot_send_on_a_channel_whose_test_mode_provider_is_not_set_up(
    test: APIClient, live: APIClient, client_tenant: Any, settings: Any
) -> None:
    from tests.factories import TemplateFactory

    TemplateFactory(client=client_tenant, key="otp", channels=["sms"], version__sms_body="Code {{ code }}")
    settings.TEST_MODE_TWILIO_API_BASE_URL = ""  # would mean Twilio's own host: not offered
    settings.TEST_MODE_VONAGE_API_BASE_URL = ""  # (the same for Vonage, the failover)
    sms = {"recipients": [{"id": "m", "phone": "+14155550100"}], "template_id": "otp",
           "variables": {"code": "1", "name": "x"}}
    refused = test.post(SEND, sms, format="json")
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "channel_not_supported"
    assert live.post(SEND, sms, format="json").status_code == 202
