"""Sending to a segment: one notification per chunk, recipients without an address skipped
in SQL, idempotent with a key."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.clients.quotas import deliveries_quota_consume
from apps.notifications.models import Delivery, Notification
from apps.segments.models import Segment
from apps.segments.services import segment_send
from tests.factories import ClientFactory, RecipientFactory, TemplateFactory

pytestmark = pytest.mark.django_db


def quota(client: Any) -> Any:
    """The client's daily delivery quota, charged as the API charges it."""
    return lambda count: deliveries_quota_consume(client=client, count=count)


@pytest.fixture
def segment(client_tenant: Any) -> Segment:
    return Segment.objects.create(client=client_tenant, name="Pro", key="pro", definition={
        "all": [{"attribute": "plan", "op": "equals", "value": "pro"}]})


@pytest.fixture
def members(client_tenant: Any) -> list[str]:
    """Five pro members with an email, one without, one free user, one of another client."""
    ids = [f"pro{i}" for i in range(5)]
    for external_id in ids:
        RecipientFactory(client=client_tenant, external_id=external_id, attributes={"plan": "pro"})
    RecipientFactory(client=client_tenant, external_id="pro_no_email", email="",
                     phone="+14155550100", attributes={"plan": "pro"})
    RecipientFactory(client=client_tenant, external_id="free", attributes={"plan": "free"})
    RecipientFactory(client=ClientFactory(), external_id="pro_elsewhere", attributes={"plan": "pro"})
    return ids


def test_one_notification_per_chunk_and_recipients_without_email_are_skipped(
    client_tenant: Any, email_template: Any, segment: Segment, members: list[str], settings: Any
) -> None:
    settings.MAX_RECIPIENTS_PER_REQUEST = 2
    notifications = segment_send(client=client_tenant, segment=segment, template_id="welcome",
                                 variables={"name": "x"}, metadata={"campaign": "c1"},
                                 charge=quota(client_tenant))

    assert [n.recipient_count for n in notifications] == [2, 2, 1]
    assert [n.metadata for n in notifications] == [
        {"campaign": "c1", "segment": "pro", "chunk": i} for i in range(3)]
    sent_to = sorted(Delivery.objects.values_list("recipient__external_id", flat=True))
    assert sent_to == members  # not pro_no_email, free or the other client's
    assert set(Delivery.objects.values_list("channel", flat=True)) == {"email"}


def test_sms_goes_to_the_members_with_a_phone(
    client_tenant: Any, segment: Segment, members: list[str]
) -> None:
    TemplateFactory(client=client_tenant, key="sms_hello", channels=["sms"],
                    version__sms_body="Hi {{ name }}")
    [notification] = segment_send(client=client_tenant, segment=segment, template_id="sms_hello",
                                  variables={"name": "x"}, charge=quota(client_tenant))
    assert list(notification.deliveries.values_list("recipient__external_id", "address")) == [
        ("pro_no_email", "+14155550100")]


def test_an_empty_segment_sends_nothing(client_tenant: Any, email_template: Any) -> None:
    nobody = Segment.objects.create(client=client_tenant, name="n", key="n", definition={
        "all": [{"attribute": "plan", "op": "equals", "value": "gold"}]})
    assert segment_send(client=client_tenant, segment=nobody, template_id="welcome",
                        variables={"name": "x"}, charge=quota(client_tenant)) == []
    assert not Notification.objects.exists()


def test_send_api_answers_202_with_notifications_and_counts(
    api: APIClient, email_template: Any, segment: Segment, members: list[str], settings: Any
) -> None:
    settings.MAX_RECIPIENTS_PER_REQUEST = 3
    body = {"template_id": "welcome", "variables": {"name": "x"}, "priority": "low",
            "category": "marketing"}
    response = api.post("/api/v1/segments/pro/send", body, format="json",
                        HTTP_IDEMPOTENCY_KEY="weekly-32")
    assert response.status_code == 202, response.json()
    result = response.json()
    assert result["recipients"] == 5 and result["skipped"] == 1
    assert len(result["notifications"]) == 2
    assert set(Notification.objects.values_list("priority", "category")) == {("low", "marketing")}

    again = api.post("/api/v1/segments/pro/send", body, format="json",
                     HTTP_IDEMPOTENCY_KEY="weekly-32")
    assert again.status_code == 202
    assert again.json()["notifications"] == result["notifications"]
    assert Notification.objects.count() == 2

    changed = api.post("/api/v1/segments/pro/send", {**body, "priority": "high"}, format="json",
                       HTTP_IDEMPOTENCY_KEY="weekly-32")
    assert changed.status_code == 422
    assert changed.json()["error"]["code"] == "idempotency_key_reused"


def test_send_api_reports_template_problems(
    api: APIClient, segment: Segment, members: list[str], email_template: Any
) -> None:
    unknown = api.post(f"/api/v1/segments/{segment.id}/send", {"template_id": "nope"},
                       format="json")
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_template"
    missing = api.post(f"/api/v1/segments/{segment.id}/send", {"template_id": "welcome"},
                       format="json")
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "missing_variables"
    invalid = api.post(f"/api/v1/segments/{segment.id}/send", {"template_id": "welcome",
                                                              "channels": ["fax"]}, format="json")
    assert invalid.status_code == 400
    assert "channels[0]" in invalid.json()["error"]["fields"]
    assert not Notification.objects.exists()


def test_segment_sends_count_against_the_daily_quota(
    api: APIClient, client_tenant: Any, email_template: Any, segment: Segment,
    members: list[str], settings: Any
) -> None:
    """Five deliveries: a quota of 7 takes one send (and its idempotent replay, free); the
    next is refused whole with 429 `quota_exceeded` and writes nothing."""
    from apps.clients.quotas import deliveries_quota_used

    settings.DAILY_DELIVERY_QUOTA_BY_CLIENT = {client_tenant.slug: 7}
    body = {"template_id": "welcome", "variables": {"name": "x"}}
    first = api.post("/api/v1/segments/pro/send", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    replay = api.post("/api/v1/segments/pro/send", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == replay.status_code == 202
    assert deliveries_quota_used(client=client_tenant) == 5

    refused = api.post("/api/v1/segments/pro/send", body, format="json")

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert int(refused["Retry-After"]) > 0
    assert Notification.objects.count() == 1
    assert deliveries_quota_used(client=client_tenant) == 5


def test_a_segment_send_at_a_local_time_is_due_then_in_each_recipients_time_zone(
    api: APIClient, client_tenant: Any, email_template: Any, segment: Segment,
    members: list[str], settings: Any
) -> None:
    settings.SCHEDULED_AT_MAX_AHEAD_DAYS = 365 * 100  # a fixed date, years ahead
    from datetime import UTC, datetime, time

    from apps.recipients.models import Recipient

    Recipient.objects.filter(external_id="pro0").update(timezone="Asia/Tokyo")
    Recipient.objects.filter(external_id="pro1").update(timezone="America/New_York")
    response = api.post("/api/v1/segments/pro/send", {
        "template_id": "welcome", "variables": {"name": "x"}, "local_send_time": "09:00",
        "local_send_date": "2099-03-02"}, format="json")

    assert response.status_code == 202, response.json()
    due = {d.recipient.external_id: d.due_at for d in Delivery.objects.select_related("recipient")}
    assert due["pro0"] == datetime(2099, 3, 2, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo
    assert due["pro1"] == datetime(2099, 3, 2, 14, 0, tzinfo=UTC)  # 09:00 in New York
    assert due["pro2"] == datetime(2099, 3, 2, 9, 0, tzinfo=UTC)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"scheduled"}
    assert {d.astimezone(UTC).time() for d in due.values()} >= {time(0, 0), time(14, 0)}

    both = api.post("/api/v1/segments/pro/send", {
        "template_id": "welcome", "variables": {"name": "x"}, "local_send_time": "09:00",
        "scheduled_at": "2099-03-02T09:00:00Z"}, format="json")
    assert both.status_code == 422
    assert both.json()["error"]["code"] == "conflicting_schedule"
