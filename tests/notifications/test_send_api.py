"""POST /api/v1/notifications and the reads that follow it, as a client service sees them."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from apps.notifications.models import Delivery, DeliveryEvent, Notification
from apps.recipients.models import Recipient
from tests.factories import ClientFactory, RecipientFactory, TemplateFactory, api_key_for

pytestmark = pytest.mark.django_db

URL = "/api/v1/notifications"


def send(api: Any, body: dict[str, Any], **headers: str) -> Any:
    return api.post(URL, body, format="json", **headers)


def queued_messages(queue: str) -> list[dict[str, Any]]:
    r = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return [json.loads(raw) for raw in r.lrange(queue, 0, -1)]


@pytest.fixture(autouse=True)
def _empty_queues() -> None:
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


def test_accepted_send_commits_notification_and_one_delivery_per_recipient_and_channel(
    api: Any, client_tenant: Any, email_template: Any
) -> None:
    RecipientFactory(client=client_tenant, external_id="user_1")

    response = send(api, {
        "recipients": ["user_1", {"id": "user_2", "email": "two@example.com"}],
        "template_id": "welcome",
        "variables": {"name": "Ada"},
    })

    assert response.status_code == 202, response.json()
    body = response.json()
    assert [d["recipient"] for d in body["deliveries"]] == ["user_1", "user_2"]
    assert {d["channel"] for d in body["deliveries"]} == {"email"}
    notification = Notification.objects.get(id=body["id"])
    assert notification.client == client_tenant
    assert notification.template_version == email_template.active_version
    assert notification.deliveries.count() == 2
    assert Recipient.objects.get(client=client_tenant, external_id="user_2").email == "two@example.com"
    assert DeliveryEvent.objects.filter(delivery__notification=notification, event="accepted").count() == 2


def test_send_is_published_after_commit_in_chunks_to_its_priority_queue(
    api: Any, client_tenant: Any, email_template: Any, django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    settings.DISPATCH_CHUNK_SIZE = 2
    recipients = [{"id": f"u{i}", "email": f"u{i}@example.com"} for i in range(5)]

    with django_capture_on_commit_callbacks(execute=True):
        response = send(api, {"recipients": recipients, "template_id": "welcome",
                              "variables": {"name": "x"}, "priority": "low"})

    assert response.status_code == 202
    messages = queued_messages("low")
    assert len(messages) == 3  # 5 deliveries in chunks of 2
    assert queued_messages("normal") == []
    notification = Notification.objects.get(id=response.json()["id"])
    # Published, and left `pending` for a worker's claim (no UPDATE after the commit).
    assert set(notification.deliveries.values_list("status", flat=True)) == {"pending"}


def test_critical_send_goes_one_delivery_per_task_on_the_critical_queue(
    api: Any, email_template: Any, django_capture_on_commit_callbacks: Any
) -> None:
    recipients = [{"id": f"u{i}", "email": f"u{i}@example.com"} for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        send(api, {"recipients": recipients, "template_id": "welcome",
                   "variables": {"name": "x"}, "priority": "critical"})
    assert len(queued_messages("critical")) == 3


def test_scheduled_send_is_held_and_not_published(
    api: Any, email_template: Any, django_capture_on_commit_callbacks: Any
) -> None:
    at = (timezone.now() + timedelta(hours=1)).isoformat()
    with django_capture_on_commit_callbacks(execute=True):
        response = send(api, {"recipients": [{"id": "u", "email": "u@example.com"}],
                              "template_id": "welcome", "variables": {"name": "x"},
                              "scheduled_at": at})
    assert response.status_code == 202
    assert response.json()["status"] == "scheduled"
    assert Delivery.objects.get().status == "scheduled"
    assert queued_messages("normal") == []


def test_schedule_in_the_past_is_422(api: Any, email_template: Any) -> None:
    at = (timezone.now() - timedelta(hours=1)).isoformat()
    response = send(api, {"recipients": [{"id": "u", "email": "u@example.com"}],
                          "template_id": "welcome", "variables": {"name": "x"}, "scheduled_at": at})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "schedule_in_past"
    assert response.json()["error"]["fields"] == {"scheduled_at": ["Must be in the future."]}


@pytest.mark.parametrize("authorization", [None, "Bearer nh_wrongwrongwrongwrongwrongwrong", "Basic abc"])
def test_missing_or_wrong_api_key_is_401(db: None, authorization: str | None) -> None:
    from rest_framework.test import APIClient

    api = APIClient()
    if authorization:
        api.credentials(HTTP_AUTHORIZATION=authorization)
    response = send(api, {"recipients": ["x"], "template_id": "welcome"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert Notification.objects.count() == 0


def test_revoked_key_is_401(client_tenant: Any) -> None:
    from rest_framework.test import APIClient

    from apps.clients.models import ApiKey
    from apps.clients.services import api_key_revoke

    raw = api_key_for(client_tenant)
    api_key_revoke(api_key=ApiKey.objects.get(client=client_tenant))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get(f"{URL}").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"template_id": "welcome"}, "recipients"),
        ({"recipients": [], "template_id": "welcome"}, "recipients"),
        ({"recipients": [{"email": "a@example.com"}], "template_id": "welcome"}, "recipients[0].id"),
        ({"recipients": [{"id": "a", "email": "not-an-email"}], "template_id": "welcome"},
         "recipients[0].email"),
        ({"recipients": [{"id": "a", "phone": "0123"}], "template_id": "welcome"}, "recipients[0].phone"),
        ({"recipients": [42], "template_id": "welcome"}, "recipients[0]"),
        ({"recipients": ["a"], "template_id": "welcome", "priority": "urgent"}, "priority"),
        ({"recipients": ["a"], "template_id": "welcome", "channels": ["fax"]}, "channels[0]"),
        ({"recipients": ["a"], "template_id": "welcome", "variables": "x"}, "variables"),
        ({"recipients": ["a"], "template_id": "welcome", "scheduled_at": "tomorrow"}, "scheduled_at"),
    ],
)
def test_invalid_body_is_400_naming_the_field_and_writes_nothing(
    api: Any, email_template: Any, body: dict[str, Any], field: str
) -> None:
    response = send(api, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"], error
    assert Notification.objects.count() == 0
    assert Recipient.objects.count() == 0


def test_malformed_json_is_400(api: Any) -> None:
    response = api.post(URL, "{bad", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_unknown_template_is_422_and_leaves_no_inline_recipient_behind(api: Any) -> None:
    response = send(api, {"recipients": [{"id": "new", "email": "n@example.com"}],
                          "template_id": "nope"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unknown_template"
    assert "template_id" in response.json()["error"]["fields"]
    assert Recipient.objects.count() == 0


def test_missing_template_variable_is_422_naming_it(api: Any, email_template: Any) -> None:
    response = send(api, {"recipients": [{"id": "a", "email": "a@example.com"}],
                          "template_id": "welcome", "variables": {}})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "missing_variables"
    assert list(error["fields"]) == ["variables.name"]
    assert Notification.objects.count() == 0


def test_unknown_recipient_id_is_422(api: Any, email_template: Any) -> None:
    response = send(api, {"recipients": ["ghost"], "template_id": "welcome", "variables": {"name": "x"}})
    assert response.status_code == 422
    assert response.json()["error"]["fields"] == {
        "recipients[0]": ["Unknown recipient id; create it with PUT /api/v1/recipients/{id}."]
    }


def test_recipient_without_address_for_channel_is_422_and_nothing_written(
    api: Any, client_tenant: Any, email_template: Any
) -> None:
    RecipientFactory(client=client_tenant, external_id="no_email", email="")
    response = send(api, {"recipients": [{"id": "fine", "email": "f@example.com"}, "no_email"],
                          "template_id": "welcome", "variables": {"name": "x"}})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "recipient_missing_address"
    assert "recipients[1]" in response.json()["error"]["fields"]
    assert not Recipient.objects.filter(external_id="fine").exists()
    assert Notification.objects.count() == 0


def test_channel_without_a_configured_provider_is_422(
    api: Any, email_template: Any, settings: Any
) -> None:
    settings.FCM_SERVICE_ACCOUNT_FILE = ""  # push is not configured
    response = send(api, {"recipients": [{"id": "a", "email": "a@example.com"}],
                          "template_id": "welcome", "variables": {"name": "x"}, "channels": ["push"]})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "channel_not_supported"
    assert "push" in response.json()["error"]["fields"]["channels"][0]


def test_template_can_be_referenced_by_id(api: Any, email_template: Any) -> None:
    response = send(api, {"recipients": [{"id": "a", "email": "a@example.com"}],
                          "template_id": str(email_template.id), "variables": {"name": "x"}})
    assert response.status_code == 202


def test_another_clients_template_is_unknown(api: Any) -> None:
    TemplateFactory(client=ClientFactory(), key="theirs")
    response = send(api, {"recipients": [{"id": "a", "email": "a@example.com"}],
                          "template_id": "theirs", "variables": {"name": "x"}})
    assert response.status_code == 422


def test_same_idempotency_key_and_body_returns_the_first_notification(
    api: Any, email_template: Any
) -> None:
    body = {"recipients": [{"id": "a", "email": "a@example.com"}], "template_id": "welcome",
            "variables": {"name": "x"}}
    first = send(api, body, HTTP_IDEMPOTENCY_KEY="order-1")
    second = send(api, body, HTTP_IDEMPOTENCY_KEY="order-1")
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second["Idempotent-Replayed"] == "true"
    assert Notification.objects.count() == 1


def test_same_idempotency_key_with_another_body_is_422(api: Any, email_template: Any) -> None:
    body = {"recipients": [{"id": "a", "email": "a@example.com"}], "template_id": "welcome",
            "variables": {"name": "x"}}
    send(api, body, HTTP_IDEMPOTENCY_KEY="order-1")
    response = send(api, {**body, "variables": {"name": "y"}}, HTTP_IDEMPOTENCY_KEY="order-1")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_get_shows_deliveries_with_their_timeline(api: Any, email_template: Any) -> None:
    created = send(api, {"recipients": [{"id": "a", "email": "a@example.com"}],
                         "template_id": "welcome", "variables": {"name": "x"}}).json()
    response = api.get(f"{URL}/{created['id']}")
    assert response.status_code == 200
    body = response.json()
    assert body["template"]["key"] == "welcome"
    assert body["template"]["version"] == 1
    [delivery] = body["deliveries"]
    assert delivery["recipient"] == "a"
    assert [e["event"] for e in delivery["timeline"]] == ["accepted"]


def test_status_counts_deliveries(api: Any, email_template: Any) -> None:
    created = send(api, {"recipients": [{"id": "a", "email": "a@example.com"},
                                        {"id": "b", "email": "b@example.com"}],
                         "template_id": "welcome", "variables": {"name": "x"}}).json()
    response = api.get(f"{URL}/{created['id']}/status")
    assert response.status_code == 200
    assert response.json()["total"] == 2
    assert response.json()["counts"] == {"pending": 2}


def test_another_clients_notification_is_404(api: Any, email_template: Any) -> None:
    other = ClientFactory()
    TemplateFactory(client=other, key="welcome")
    from rest_framework.test import APIClient

    other_api = APIClient()
    other_api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(other)}")
    theirs = send(other_api, {"recipients": [{"id": "a", "email": "a@example.com"}],
                              "template_id": "welcome", "variables": {"name": "x"}}).json()

    for path in (f"{URL}/{theirs['id']}", f"{URL}/{theirs['id']}/status"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert theirs["id"] not in json.dumps(api.get(URL).json())


def test_malformed_notification_id_is_404(api: Any) -> None:
    response = api.get(f"{URL}/not-a-uuid")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_list_paginates_and_filters_by_status(api: Any, email_template: Any) -> None:
    for i in range(3):
        send(api, {"recipients": [{"id": f"r{i}", "email": f"r{i}@example.com"}],
                   "template_id": "welcome", "variables": {"name": "x"}})
    page = api.get(URL, {"page_size": 2}).json()
    assert len(page["results"]) == 2
    assert page["next"]
    rest = api.get(page["next"]).json()
    assert len(rest["results"]) == 1
    assert api.get(URL, {"status": "completed"}).json()["results"] == []
    assert api.get(URL, {"status": "bogus"}).status_code == 400


def test_more_recipients_than_allowed_is_400(api: Any, email_template: Any, settings: Any) -> None:
    settings.MAX_RECIPIENTS_PER_REQUEST = 2
    response = send(api, {"recipients": [{"id": f"u{i}", "email": f"u{i}@example.com"} for i in range(3)],
                          "template_id": "welcome", "variables": {"name": "x"}})
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["recipients"] == ["At most 2 recipients per request."]
