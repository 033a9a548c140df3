"""Sending to a segment: one notification per chunk, recipients without an address skipped
in SQL, idempotent with a key."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.notifications.models import Delivery, Notification
from apps.segments.models import Segment
from apps.segments.services import segment_send
from tests.factories import ClientFactory, RecipientFactory, TemplateFactory

pytestmark = pytest.mark.django_db


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
                                 variables={"name": "x"}, metadata={"campaign": "c1"})

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
                                  variables={"name": "x"})
    assert list(notification.deliveries.values_list("recipient__external_id", "address")) == [
        ("pro_no_email", "+14155550100")]


def test_an_empty_segment_sends_nothing(client_tenant: Any, email_template: Any) -> None:
    nobody = Segment.objects.create(client=client_tenant, name="n", key="n", definition={
        "all": [{"attribute": "plan", "op": "equals", "value": "gold"}]})
    assert segment_send(client=client_tenant, segment=nobody, template_id="welcome",
                        variables={"name": "x"}) == []
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
