"""The hot reads (detail, deliveries pages, the list) write their JSON from plain rows
(selectors.deliveries_rows_page, selectors.NotificationList) instead of model instances through
the serializers: the same JSON the declared serializer fields write on the same data, the same
rows the ORM's queryset finds under every filter, and a fixed number of statements."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from apps.notifications.api.serializers import (
    DeliverySerializer,
    DeliveryWithTimelineSerializer,
    NotificationDetailSerializer,
    NotificationSerializer,
)
from apps.notifications.dispatch import deliveries_claim, delivery_record_outcome
from apps.notifications.models import Delivery, Notification
from apps.notifications.providers.base import SendResult
from apps.notifications.selectors import DETAIL_DELIVERY_PAGE, notification_list
from apps.notifications.services import notification_send
from apps.notifications.status import notifications_refresh_status
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/notifications"


def as_json(data: Any) -> Any:
    return json.loads(JSONRenderer().render(data))


def generic(serializer: serializers.Serializer, instance: Any) -> Any:
    """What DRF's declared fields write (the serializer's own to_representation bypassed)."""
    return as_json(serializers.Serializer.to_representation(serializer, instance))


@pytest.fixture
def sent(client_tenant: Any) -> Notification:
    """A notification on email and SMS to 12 recipients: one delivery retrying (with a due
    time), one failed, three sent; timelines of one to three events; counts refreshed."""
    TemplateFactory(client=client_tenant, key="welcome", channels=["email", "sms"],
                    version__sms_body="Hi {{ name }}")
    notification = notification_send(
        client=client_tenant, template_id="welcome", variables={"name": "Zoë"},
        metadata={"campaign": 7}, channels=["email", "sms"],
        recipients=[{"id": f"r{i:02d}", "email": f"r{i}@example.com", "phone": "+14155550100"}
                    for i in range(12)],
    ).notification
    ids = [str(i) for i in notification.deliveries.order_by("created_at", "id")
           .values_list("id", flat=True)]
    outcomes = [SendResult.retryable("sendgrid", "http_503", "busy"),
                SendResult.permanent("sendgrid", "http_400", "bad"),
                *[SendResult.sent("sendgrid", f"m{i}") for i in range(3)]]
    for delivery_id, outcome in zip(ids, outcomes, strict=False):
        attempt = deliveries_claim(delivery_ids=[delivery_id])[delivery_id]
        delivery_record_outcome(delivery_id=delivery_id, attempt=attempt, result=outcome)
    notifications_refresh_status(notification_ids=[notification.id])
    assert Delivery.objects.filter(status="retrying", due_at__isnull=False).exists()
    return Notification.objects.select_related("template_version__template").get(
        id=notification.id)


def deliveries(notification: Notification) -> list[Delivery]:
    return list(notification.deliveries.select_related("recipient").prefetch_related("events")
                .order_by("created_at", "id"))


def test_deliveries_pages_are_what_the_serializers_write(api: Any, sent: Notification) -> None:
    expected = deliveries(sent)
    with_events = api.get(f"{URL}/{sent.id}/deliveries?include=events&page_size=500").json()
    plain = api.get(f"{URL}/{sent.id}/deliveries?page_size=500").json()

    assert with_events["results"] == [generic(DeliveryWithTimelineSerializer(), d)
                                      for d in expected]
    assert plain["results"] == [generic(DeliverySerializer(), d) for d in expected]
    retrying = next(d for d in plain["results"] if d["status"] == "retrying")
    assert retrying["next_attempt_at"] is not None


def test_detail_is_what_the_detail_serializer_writes(api: Any, sent: Notification) -> None:
    body = api.get(f"{URL}/{sent.id}").json()

    context = {"counts": {"failed": 1, "pending": 19, "retrying": 1, "sent": 3},
               "deliveries": deliveries(sent)[:DETAIL_DELIVERY_PAGE],
               "deliveries_next": body["deliveries_next"]}
    assert body == generic(NotificationDetailSerializer(context=context), sent)
    assert body["deliveries_next"] is not None


LIST_FILTERS = [
    {}, {"status": "processing"}, {"status": "pending"}, {"channel": "sms"},
    {"channel": "push"}, {"recipient": "r03"}, {"status": "processing", "channel": "email"},
]


@pytest.mark.parametrize("filters", LIST_FILTERS)
def test_the_list_holds_what_the_querysets_find_under_every_filter(
    api: Any, client_tenant: Any, sent: Notification, filters: dict[str, str]
) -> None:
    for i in range(4):  # more notifications: email only, some to r03, older and newer
        notification_send(client=client_tenant, template_id="welcome", channels=["email"],
                          variables={"name": "x"}, recipients=[f"r{i:02d}"])
    Notification.objects.filter(channels=["email"]).update(
        created_at=timezone.now() - timedelta(hours=2))
    window = {"created_after": (timezone.now() - timedelta(hours=1)).isoformat(),
              "created_before": (timezone.now() + timedelta(hours=1)).isoformat()}
    for params in (filters, {**filters, **window}):
        expected = [generic(NotificationSerializer(), n) for n in notification_list(
            client=client_tenant, is_test=False, **params).order_by("-created_at", "-id")]

        forwards, response = [], api.get(URL, {**params, "page_size": 2})
        while True:
            body = response.json()
            forwards.extend(body["results"])
            if body["next"] is None:
                break
            response = api.get(body["next"])
        assert forwards == expected
        if body["previous"] is not None:  # and back from the last page
            backwards = list(body["results"])
            response = api.get(body["previous"])
            while True:
                page = response.json()
                backwards[:0] = page["results"]
                if page["previous"] is None:
                    break
                response = api.get(page["previous"])
            assert backwards == expected


def statements(api: Any, path: str) -> int:
    api.get(path)  # warm caches (API key, statements) so every read is measured alike
    with CaptureQueriesContext(connection) as ctx:
        assert api.get(path).status_code == 200
    return len(ctx.captured_queries)


def test_each_read_is_a_fixed_number_of_statements(api: Any, sent: Notification) -> None:
    status = statements(api, f"{URL}/{sent.id}/status")  # the notification (+ the API key)
    # + the first page of deliveries with their timelines (one statement); the stored
    # counts cost nothing.
    assert statements(api, f"{URL}/{sent.id}") == status + 1
    assert statements(api, f"{URL}/{sent.id}/deliveries") == status + 1
    assert statements(api, f"{URL}/{sent.id}/deliveries?include=events") == status + 1
    # The list is one statement instead of the notification's.
    assert statements(api, f"{URL}?status=processing&channel=sms") == status
    assert statements(api, f"{URL}?recipient=r01") == status
