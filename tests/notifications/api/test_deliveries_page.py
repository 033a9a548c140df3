"""GET /api/v1/notifications/{id}/deliveries (a notification's deliveries, a page at a time),
the detail's first page and counts, and reads that cost the same whatever the notification's
size."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.clients.services import api_key_create
from apps.notifications.dispatch import deliveries_claim, delivery_record_outcome
from apps.notifications.models import Delivery, Notification
from apps.notifications.providers.base import SendResult
from apps.notifications.selectors import DETAIL_DELIVERY_PAGE
from apps.notifications.services import notification_send
from apps.notifications.status import notifications_refresh_status
from tests.factories import TemplateFactory

from .helpers import api_with_key

pytestmark = pytest.mark.django_db

URL = "/api/v1/notifications"


def send_to(client: Any, count: int, *, is_test: bool = False, key: str = "welcome") -> Notification:
    if not client.templates.filter(key=key).exists():
        TemplateFactory(client=client, key=key, channels=["email", "sms"],
                        version__sms_body="Hi {{ name }}")
    return notification_send(
        client=client, template_id=key, variables={"name": "x"}, is_test=is_test,
        recipients=[{"id": f"r{i:03d}", "email": f"r{i}@example.com", "phone": "+14155550100"}
                    for i in range(count)],
    ).notification


def record(notification: Notification, outcome: SendResult, *, count: int | None = None) -> None:
    """Claims and records an outcome for `count` (all) of its deliveries still claimable."""
    ids = [str(i) for i in notification.deliveries.filter(status__in=["pending", "queued"])
           .order_by("created_at", "id").values_list("id", flat=True)[:count]]
    for delivery_id, attempt in deliveries_claim(delivery_ids=ids).items():
        delivery_record_outcome(delivery_id=delivery_id, attempt=attempt, result=outcome)
    notifications_refresh_status(notification_ids=[notification.id])


def all_pages(api: Any, url: str, **params: Any) -> tuple[list[dict[str, Any]], int]:
    results: list[dict[str, Any]] = []
    pages = 0
    response = api.get(url, params)
    while True:
        assert response.status_code == 200, response.json()
        pages += 1
        body = response.json()
        results.extend(body["results"])
        if body["next"] is None:
            return results, pages
        response = api.get(body["next"])


def test_pages_hold_every_delivery_once_in_accepted_order(api: Any, client_tenant: Any) -> None:
    notification = send_to(client_tenant, 23)  # 46 deliveries: email and sms
    expected = [str(i) for i in Delivery.objects.filter(notification=notification)
                .order_by("created_at", "id").values_list("id", flat=True)]

    results, pages = all_pages(api, f"{URL}/{notification.id}/deliveries", page_size=10)

    assert [d["id"] for d in results] == expected
    assert pages == 5
    first = results[0]
    assert {"id", "recipient", "channel", "status", "provider", "error_code", "error_message",
            "created_at", "sent_at", "delivered_at", "completed_at"} <= set(first)
    assert "timeline" not in first


def test_a_cursor_stays_valid_while_deliveries_change(api: Any, client_tenant: Any) -> None:
    notification = send_to(client_tenant, 10)
    url = f"{URL}/{notification.id}/deliveries"
    first = api.get(url, {"page_size": 8}).json()
    # Deliveries of the first page move on; the second page is still the next eight.
    record(notification, SendResult.sent("sendgrid", "m1"), count=8)

    second = api.get(first["next"]).json()

    everything = [d["id"] for d in all_pages(api, url, page_size=100)[0]]
    assert [d["id"] for d in first["results"] + second["results"]] == everything[:16]
    assert len(second["results"]) == 8


def test_filters_by_status_and_channel(api: Any, client_tenant: Any) -> None:
    notification = send_to(client_tenant, 6)
    record(notification, SendResult.permanent("sendgrid", "http_500", "boom"), count=4)
    url = f"{URL}/{notification.id}/deliveries"

    failed, _ = all_pages(api, url, status="failed", page_size=3)
    sms, _ = all_pages(api, url, channel="sms", page_size=2)
    failed_sms, _ = all_pages(api, url, channel="sms", status="failed")

    assert len(failed) == 4 and {d["status"] for d in failed} == {"failed"}
    assert {d["error_code"] for d in failed} == {"http_500"}
    assert len(sms) == 6 and {d["channel"] for d in sms} == {"sms"}
    assert {d["id"] for d in failed_sms} == {d["id"] for d in failed if d["channel"] == "sms"}


def test_include_events_adds_each_timeline(api: Any, client_tenant: Any) -> None:
    notification = send_to(client_tenant, 2)
    record(notification, SendResult.sent("sendgrid", "m1"), count=1)

    body = api.get(f"{URL}/{notification.id}/deliveries", {"include": "events"}).json()

    timelines = [[e["event"] for e in d["timeline"]] for d in body["results"]]
    assert timelines[0] == ["accepted", "claimed", "sent"]
    assert timelines[1:] == [["accepted"]] * 3


@pytest.mark.parametrize("query", [
    {"cursor": "not-a-cursor"}, {"cursor": "bm9wZQ"}, {"status": "nope"}, {"channel": "fax"},
    {"page_size": "0"}, {"page_size": "501"}, {"include": "everything"},
])
def test_bad_query_is_400_naming_the_field(api: Any, client_tenant: Any,
                                           query: dict[str, str]) -> None:
    notification = send_to(client_tenant, 1)
    response = api.get(f"{URL}/{notification.id}/deliveries", query)
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == list(query)


def test_unknown_other_clients_and_other_modes_notifications_are_404(
    api: Any, client_tenant: Any, other_tenant: Any
) -> None:
    theirs = send_to(other_tenant, 1)
    my_test = send_to(client_tenant, 1, is_test=True)
    my_live = send_to(client_tenant, 1)
    test_api = api_with_key(api_key_create(client=client_tenant, name="t", mode="test")[1])

    for caller, notification_id in ((api, theirs.id), (api, my_test.id),
                                    (test_api, my_live.id), (api, "8d7f0c52-1111-4aaa-8bbb-000000000000")):
        for suffix in ("", "/status", "/deliveries"):
            response = caller.get(f"{URL}/{notification_id}{suffix}")
            assert response.status_code == 404, suffix
            assert response.json()["error"]["code"] == "not_found"
    assert test_api.get(f"{URL}/{my_test.id}/deliveries").status_code == 200


def test_a_cursor_of_another_notification_pages_only_this_one(api: Any, client_tenant: Any) -> None:
    first = send_to(client_tenant, 5)
    second = send_to(client_tenant, 5, key="other")
    cursor = api.get(f"{URL}/{first.id}/deliveries", {"page_size": 2}).json()["next"]
    query = cursor.split("?", 1)[1]

    results = api.get(f"{URL}/{second.id}/deliveries?{query}").json()["results"]

    assert {d["id"] for d in results} <= {str(i) for i in second.deliveries.values_list("id", flat=True)}


def test_detail_shows_counts_and_the_first_page_with_a_link_to_the_rest(
    api: Any, client_tenant: Any
) -> None:
    notification = send_to(client_tenant, DETAIL_DELIVERY_PAGE)  # twice the page: email + sms
    record(notification, SendResult.sent("sendgrid", "m1"), count=3)

    body = api.get(f"{URL}/{notification.id}").json()

    assert body["counts"] == {"pending": 2 * DETAIL_DELIVERY_PAGE - 3, "sent": 3}
    assert body["total"] == 2 * DETAIL_DELIVERY_PAGE
    assert len(body["deliveries"]) == DETAIL_DELIVERY_PAGE
    assert [e["event"] for e in body["deliveries"][-1]["timeline"]] == ["accepted"]
    rest, _ = all_pages(api, body["deliveries_next"])
    ids = [d["id"] for d in body["deliveries"] + rest]
    assert len(ids) == len(set(ids)) == 2 * DETAIL_DELIVERY_PAGE
    assert all("timeline" in d for d in rest)


def test_detail_of_a_small_notification_has_no_next(api: Any, client_tenant: Any) -> None:
    notification = send_to(client_tenant, 1)
    body = api.get(f"{URL}/{notification.id}").json()
    assert len(body["deliveries"]) == 2 and body["deliveries_next"] is None
    assert body["counts"] == {"pending": 2}


def queries(api: Any, path: str) -> int:
    api.get(path)  # warm caches (API key, template) so both sizes are measured alike
    with CaptureQueriesContext(connection) as ctx:
        assert api.get(path).status_code == 200
    return len(ctx.captured_queries)


def test_reads_cost_the_same_queries_whatever_the_number_of_deliveries(
    api: Any, client_tenant: Any
) -> None:
    small = send_to(client_tenant, 1)
    large = send_to(client_tenant, 60, key="large")
    for notification in (small, large):
        record(notification, SendResult.sent("sendgrid", "m"), count=50)
        record(notification, SendResult.permanent("sendgrid", "http_500", "boom"))

    for suffix in ("", "/status", "/deliveries?include=events", "/deliveries?status=failed"):
        assert queries(api, f"{URL}/{small.id}{suffix}") == queries(api, f"{URL}/{large.id}{suffix}")
    assert queries(api, f"{URL}/{large.id}/status") <= 3  # auth + the notification
    for params in ("", "?status=partially_failed&channel=sms", "?recipient=r001",
                   f"?created_after={(timezone.now() - timedelta(hours=1)).isoformat()}"
                   .replace("+", "%2B")):
        few = queries(api, f"{URL}{params}")
        for i in range(5):
            send_to(client_tenant, 3, key=f"more{i}")
        assert queries(api, f"{URL}{params}") == few
