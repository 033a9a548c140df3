"""Idempotency-Key on POST /notifications and /notifications/bulk (API.md): replay, reuse with
another body, in flight, expiry, and a race of identical requests."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.core.models import IdempotencyRecord
from apps.notifications.models import Notification
from tests.factories import api_key_for

from .helpers import api_with_key, concurrently

SEND = "/api/v1/notifications"
BULK = "/api/v1/notifications/bulk"
BODY = {"recipients": [{"id": "a", "email": "a@example.com"}], "template_id": "welcome",
        "variables": {"name": "x"}}


def post(api: Any, url: str, body: Any, key: str) -> Any:
    return api.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.django_db
class TestReplay:
    def test_same_key_and_body_replays_the_first_response(self, api: Any, email_template: Any) -> None:
        first = post(api, SEND, BODY, "k1")
        second = post(api, SEND, BODY, "k1")

        assert first.status_code == second.status_code == 202
        assert second.json() == first.json()
        assert second["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first
        assert Notification.objects.count() == 1

    def test_bulk_replays_too(self, api: Any, email_template: Any) -> None:
        body = {"notifications": [BODY, {**BODY, "variables": {"name": "y"}}]}
        first = post(api, BULK, body, "b1")
        second = post(api, BULK, body, "b1")

        assert first.status_code == second.status_code == 202
        assert second.json() == first.json()
        assert second["Idempotent-Replayed"] == "true"
        assert Notification.objects.count() == 2

    def test_another_body_is_422_and_creates_nothing(self, api: Any, email_template: Any) -> None:
        post(api, BULK, {"notifications": [BODY]}, "b1")
        response = post(api, BULK, {"notifications": [BODY, BODY]}, "b1")

        assert response.status_code == 422
        assert response.json()["error"]["code"] == "idempotency_key_reused"
        assert Notification.objects.count() == 1

    def test_the_same_key_on_another_endpoint_is_a_different_request(
        self, api: Any, email_template: Any
    ) -> None:
        post(api, SEND, BODY, "k1")
        response = post(api, BULK, {"notifications": [BODY]}, "k1")
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "idempotency_key_reused"

    def test_keys_are_scoped_per_client(self, api: Any, email_template: Any, other_api: Any) -> None:
        mine = post(api, SEND, BODY, "shared")
        theirs = post(other_api, SEND, BODY, "shared")

        assert mine.status_code == theirs.status_code == 202
        assert mine.json()["id"] != theirs.json()["id"]
        assert "Idempotent-Replayed" not in theirs

    def test_a_refused_request_stores_nothing_so_the_key_can_be_used_again(
        self, api: Any, email_template: Any
    ) -> None:
        refused = post(api, BULK, {"notifications": [{**BODY, "template_id": "nope"}]}, "k2")
        assert refused.status_code == 422
        assert not IdempotencyRecord.objects.exists()

        accepted = post(api, BULK, {"notifications": [BODY]}, "k2")
        assert accepted.status_code == 202
        assert "Idempotent-Replayed" not in accepted

    def test_a_too_long_key_is_400(self, api: Any, email_template: Any) -> None:
        response = post(api, BULK, {"notifications": [BODY]}, "x" * 256)
        assert response.status_code == 400
        assert "Idempotency-Key" in response.json()["error"]["fields"]
        assert Notification.objects.count() == 0

    def test_after_24_hours_the_key_is_free_and_expired_records_are_purged(
        self, api: Any, email_template: Any, other_tenant: Any
    ) -> None:
        post(api, BULK, {"notifications": [BODY]}, "old")
        stale = IdempotencyRecord.objects.create(
            client=other_tenant, key="stale", request_hash="0" * 64, status_code=202,
            response_body={}, expires_at=timezone.now() - timedelta(seconds=1))
        IdempotencyRecord.objects.filter(key="old").update(
            expires_at=timezone.now() - timedelta(seconds=1))

        response = post(api, BULK, {"notifications": [BODY, BODY]}, "old")

        assert response.status_code == 202
        assert "Idempotent-Replayed" not in response
        assert Notification.objects.count() == 3
        record = IdempotencyRecord.objects.get(key="old")
        assert record.expires_at > timezone.now() + timedelta(hours=23)
        assert not IdempotencyRecord.objects.filter(id=stale.id).exists()

    def test_the_single_send_key_stays_on_the_notification_after_the_record_expires(
        self, api: Any, email_template: Any
    ) -> None:
        first = post(api, SEND, BODY, "order-1")
        IdempotencyRecord.objects.all().delete()

        again = post(api, SEND, BODY, "order-1")

        assert again.json()["id"] == first.json()["id"]
        assert again["Idempotent-Replayed"] == "true"
        assert Notification.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_request_while_the_first_is_in_flight_is_409(
    client_tenant: Any, email_template: Any, monkeypatch: Any
) -> None:
    from apps.notifications.api import views

    raw_key = api_key_for(client_tenant)
    entered, release = threading.Event(), threading.Event()
    real_send = views.notification_send

    def slow_send(**kwargs: Any) -> Any:
        entered.set()
        assert release.wait(30)
        return real_send(**kwargs)

    monkeypatch.setattr(views, "notification_send", slow_send)

    def call() -> Any:
        return post(api_with_key(raw_key), SEND, BODY, "slow")

    results: list[Any] = []
    first = threading.Thread(target=lambda: results.append(concurrently(1, lambda _: call())[0]))
    first.start()
    assert entered.wait(30)
    monkeypatch.setattr(views, "notification_send", real_send)

    during = call()
    release.set()
    first.join(30)
    after = call()

    assert during.status_code == 409
    assert during.json()["error"]["code"] == "idempotency_key_in_flight"
    assert results[0].status_code == 202
    assert after.status_code == 202
    assert after["Idempotent-Replayed"] == "true"
    assert after.json()["id"] == results[0].json()["id"]
    assert Notification.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("url", [SEND, BULK])
def test_fifty_identical_concurrent_requests_create_one_notification(
    client_tenant: Any, email_template: Any, url: str
) -> None:
    raw_key = api_key_for(client_tenant)
    body = BODY if url == SEND else {"notifications": [BODY]}

    def call(_: int) -> Any:
        return post(api_with_key(raw_key), url, body, "race")

    responses = concurrently(50, call)

    assert not [r for r in responses if isinstance(r, Exception)], responses
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {202, 409}, statuses
    accepted = [r for r in responses if r.status_code == 202]
    first = [r for r in accepted if "Idempotent-Replayed" not in r]
    assert len(first) == 1
    assert all(r.json() == first[0].json() for r in accepted)
    assert Notification.objects.count() == 1
