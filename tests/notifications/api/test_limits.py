"""Per-client request throttle and daily delivery quota: 429 with Retry-After, exact under
concurrency (the counters are Lua scripts in Redis)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from apps.clients.quotas import deliveries_quota_used, seconds_until_utc_midnight
from apps.notifications.models import Delivery, Notification
from tests.factories import api_key_for

from .helpers import api_with_key, concurrently

SEND = "/api/v1/notifications"
BULK = "/api/v1/notifications/bulk"


def body(recipient: str) -> dict[str, Any]:
    return {"recipients": [{"id": recipient, "email": f"{recipient}@example.com"}],
            "template_id": "welcome", "variables": {"name": "x"}}


@pytest.mark.django_db
def test_over_the_rate_is_429_throttled_with_retry_after(api: Any, settings: Any) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"client": "3/min"}}

    statuses = [api.get(SEND).status_code for _ in range(3)]
    refused = api.get(SEND)

    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "throttled"
    assert 1 <= int(refused["Retry-After"]) <= 20  # one request per 20 s comes back


@pytest.mark.django_db
def test_the_throttle_is_per_client_and_can_be_set_per_client(
    api: Any, client_tenant: Any, other_api: Any, settings: Any
) -> None:
    settings.API_THROTTLE_RATES_BY_CLIENT = {client_tenant.slug: "1/hour"}
    assert api.get(SEND).status_code == 200
    assert api.get(SEND).status_code == 429
    assert int(api.get(SEND)["Retry-After"]) > 3000
    assert other_api.get(SEND).status_code == 200  # the default rate, its own counter


@pytest.mark.django_db
def test_requests_without_a_key_are_not_throttled(client: Any, settings: Any) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"client": "1/min"}}
    assert [client.get("/api/v1/health").status_code for _ in range(3)] == [200, 200, 200]


@pytest.mark.django_db
def test_limits_fail_open_without_redis(api: Any, client_tenant: Any, email_template: Any,
                                        settings: Any) -> None:
    settings.API_LIMITS_REDIS_URL = "redis://127.0.0.1:1/0"
    settings.API_THROTTLE_RATES_BY_CLIENT = {client_tenant.slug: "1/hour"}
    settings.DAILY_DELIVERY_QUOTA_BY_CLIENT = {client_tenant.slug: 0}
    assert api.get(SEND).status_code == 200
    assert api.post(SEND, body("a"), format="json").status_code == 202


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_never_pass_the_rate(client_tenant: Any, settings: Any) -> None:
    settings.API_THROTTLE_RATES_BY_CLIENT = {client_tenant.slug: "10/min"}
    raw_key = api_key_for(client_tenant)

    responses = concurrently(30, lambda _: api_with_key(raw_key).get(SEND))

    statuses = sorted(getattr(r, "status_code", r) for r in responses)
    assert statuses == [200] * 10 + [429] * 20
    assert all(int(r["Retry-After"]) >= 1 for r in responses if r.status_code == 429)


@pytest.mark.django_db
def test_over_the_daily_quota_is_429_quota_exceeded_until_midnight_utc(
    api: Any, client_tenant: Any, email_template: Any, settings: Any
) -> None:
    settings.DAILY_DELIVERY_QUOTA_BY_CLIENT = {client_tenant.slug: 3}
    assert api.post(SEND, body("a"), format="json").status_code == 202
    two = {"notifications": [body("b"), body("c")]}
    assert api.post(BULK, two, format="json").status_code == 202

    refused = api.post(SEND, body("d"), format="json")

    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert "0 of 3" in error["fields"]["quota"][0]
    expected = seconds_until_utc_midnight(datetime.now(UTC))
    assert abs(int(refused["Retry-After"]) - expected) <= 5
    assert Notification.objects.count() == 3
    assert deliveries_quota_used(client=client_tenant) == 3


@pytest.mark.django_db
def test_a_bulk_send_over_the_quota_is_refused_whole_and_counts_nothing(
    api: Any, client_tenant: Any, email_template: Any, settings: Any
) -> None:
    settings.DAILY_DELIVERY_QUOTA_BY_CLIENT = {client_tenant.slug: 2}
    response = api.post(BULK, {"notifications": [body("a"), body("b"), body("c")]}, format="json")

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert Notification.objects.count() == 0
    assert deliveries_quota_used(client=client_tenant) == 0
    assert api.post(BULK, {"notifications": [body("a"), body("b")]}, format="json").status_code == 202


@pytest.mark.django_db
def test_refused_and_replayed_sends_do_not_count(
    api: Any, client_tenant: Any, email_template: Any
) -> None:
    assert api.post(SEND, {**body("a"), "template_id": "nope"}, format="json").status_code == 422
    api.post(SEND, body("a"), format="json", HTTP_IDEMPOTENCY_KEY="k")
    api.post(SEND, body("a"), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert deliveries_quota_used(client=client_tenant) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_never_pass_the_quota(
    client_tenant: Any, email_template: Any, settings: Any
) -> None:
    settings.DAILY_DELIVERY_QUOTA_BY_CLIENT = {client_tenant.slug: 10}
    raw_key = api_key_for(client_tenant)

    responses = concurrently(25, lambda i: api_with_key(raw_key).post(SEND, body(f"u{i}"), format="json"))

    statuses = sorted(getattr(r, "status_code", r) for r in responses)
    assert statuses == [202] * 10 + [429] * 15
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {"quota_exceeded"}
    assert all(int(r["Retry-After"]) >= 1 for r in responses if r.status_code == 429)
    assert Delivery.objects.filter(client=client_tenant).count() == 10
    assert deliveries_quota_used(client=client_tenant) == 10
