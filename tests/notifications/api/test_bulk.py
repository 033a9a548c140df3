"""POST /api/v1/notifications/bulk: many sends accepted together, all or nothing."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from apps.notifications.enqueue import GATHER_LIST_KEY
from apps.notifications.models import Delivery, DeliveryEvent, Notification
from apps.recipients.models import Recipient
from tests.factories import RecipientFactory, TemplateFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/notifications/bulk"


def item(recipient: Any, **extra: Any) -> dict[str, Any]:
    return {"recipients": [recipient], "template_id": "welcome", "variables": {"name": "x"}, **extra}


def bulk(api: Any, items: list[dict[str, Any]], **headers: str) -> Any:
    return api.post(URL, {"notifications": items}, format="json", **headers)


def published(queue: str) -> set[str]:
    """The delivery ids in the dispatch tasks waiting on a queue, and those gathered for the
    queue's gathering task (apps/notifications/enqueue.py, "Gathering")."""
    r = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    ids: set[str] = set()
    for raw in r.lrange(queue, 0, -1):
        args = json.loads(base64.b64decode(json.loads(raw)["body"]))[0]
        ids.update(args[0])
    ids.update(raw.decode() for raw in r.lrange(GATHER_LIST_KEY.format(priority=queue), 0, -1))
    return ids


def test_bulk_accepts_every_item_and_returns_their_ids_by_index(
    api: Any, client_tenant: Any, email_template: Any, django_capture_on_commit_callbacks: Any
) -> None:
    RecipientFactory(client=client_tenant, external_id="known")
    TemplateFactory(client=client_tenant, key="other")
    later = (timezone.now() + timedelta(hours=2)).isoformat()
    items = [
        item({"id": "a", "email": "a@example.com"}),
        item("known", priority="high"),
        {"recipients": [{"id": "b", "email": "b@example.com"}, "known"], "template_id": "other",
         "variables": {"name": "y"}, "metadata": {"batch": "7"}},
        item({"id": "c", "email": "c@example.com"}, scheduled_at=later),
    ]

    with django_capture_on_commit_callbacks(execute=True):
        response = bulk(api, items)

    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["count"] == 4
    assert [n["index"] for n in body["notifications"]] == [0, 1, 2, 3]
    assert [n["status"] for n in body["notifications"]] == ["pending", "pending", "pending", "scheduled"]
    notifications = {str(n.id): n for n in Notification.objects.filter(client=client_tenant)}
    assert set(notifications) == {n["id"] for n in body["notifications"]}
    third = notifications[body["notifications"][2]["id"]]
    assert third.template_version.template.key == "other"
    assert third.metadata == {"batch": "7"}
    assert sorted(third.deliveries.values_list("recipient__external_id", flat=True)) == ["b", "known"]
    assert Delivery.objects.filter(client=client_tenant).count() == 5
    assert DeliveryEvent.objects.filter(event="accepted").count() == 5
    assert Recipient.objects.get(client=client_tenant, external_id="c").email == "c@example.com"
    # Published after commit to each priority's queue; the scheduled one waits.
    by_priority = {p: {str(i) for i in Delivery.objects.filter(priority=p, status="pending")
                       .values_list("id", flat=True)} for p in ("high", "normal")}
    assert len(by_priority["high"]) == 1 and len(by_priority["normal"]) == 3
    assert published("high") == by_priority["high"]
    assert published("normal") == by_priority["normal"]
    scheduled = notifications[body["notifications"][3]["id"]].deliveries.get()
    assert scheduled.status == "scheduled"


def test_invalid_items_are_400_naming_each_index_and_nothing_is_written(
    api: Any, email_template: Any
) -> None:
    response = bulk(api, [
        item({"id": "ok", "email": "ok@example.com"}),
        {"recipients": [{"id": "a", "email": "a@example.com"}]},
        item({"id": "b", "email": "not-an-email"}),
        item({"id": "c", "email": "c@example.com"}, priority="urgent"),
    ])

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert set(error["fields"]) == {"notifications[1].template_id",
                                    "notifications[2].recipients[0].email",
                                    "notifications[3].priority"}
    assert Notification.objects.count() == 0
    assert Recipient.objects.count() == 0


@pytest.mark.parametrize("body", [{}, {"notifications": []}, {"notifications": "x"},
                                  {"notifications": [42]}])
def test_a_body_without_items_is_400(api: Any, body: dict[str, Any]) -> None:
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    assert any(name.startswith("notifications") for name in response.json()["error"]["fields"])


def test_unknown_template_is_422_naming_every_item_that_uses_it(
    api: Any, email_template: Any, other_tenant: Any
) -> None:
    TemplateFactory(client=other_tenant, key="theirs")
    response = bulk(api, [
        item({"id": "a", "email": "a@example.com"}),
        item({"id": "b", "email": "b@example.com"}, template_id="nope"),
        item({"id": "c", "email": "c@example.com"}),
        item({"id": "d", "email": "d@example.com"}, template_id="theirs"),
    ])

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unknown_template"
    assert set(error["fields"]) == {"notifications[1].template_id", "notifications[3].template_id"}
    assert Recipient.objects.count() == 0


def test_unknown_recipient_rolls_back_the_inline_recipients_of_valid_items(
    api: Any, email_template: Any
) -> None:
    response = bulk(api, [
        item({"id": "new", "email": "new@example.com"}),
        {"recipients": [{"id": "x", "email": "x@example.com"}, "ghost"], "template_id": "welcome",
         "variables": {"name": "x"}},
    ])

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unknown_recipient"
    assert list(error["fields"]) == ["notifications[1].recipients[1]"]
    assert Recipient.objects.count() == 0
    assert Notification.objects.count() == 0


def test_missing_variables_and_addresses_name_the_item(
    api: Any, client_tenant: Any, email_template: Any
) -> None:
    missing_var = bulk(api, [item({"id": "a", "email": "a@example.com"}),
                             {**item({"id": "b", "email": "b@example.com"}), "variables": {}}])
    assert missing_var.status_code == 422
    assert missing_var.json()["error"]["code"] == "missing_variables"
    assert list(missing_var.json()["error"]["fields"]) == ["notifications[1].variables.name"]

    RecipientFactory(client=client_tenant, external_id="no_email", email="")
    no_address = bulk(api, [item("no_email"), item({"id": "b", "email": "b@example.com"})])
    assert no_address.status_code == 422
    assert no_address.json()["error"]["code"] == "recipient_missing_address"
    assert list(no_address.json()["error"]["fields"]) == ["notifications[0].recipients[0]"]
    assert Notification.objects.count() == 0


def test_schedule_rules_name_the_item(api: Any, email_template: Any) -> None:
    past = (timezone.now() - timedelta(hours=1)).isoformat()
    response = bulk(api, [item({"id": "a", "email": "a@example.com"}),
                          item({"id": "b", "email": "b@example.com"}, scheduled_at=past)])
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "schedule_in_past"
    assert list(response.json()["error"]["fields"]) == ["notifications[1].scheduled_at"]


def test_unsupported_channel_names_the_item(api: Any, email_template: Any, settings: Any) -> None:
    settings.FCM_SERVICE_ACCOUNT_FILE = ""
    response = bulk(api, [item({"id": "a", "email": "a@example.com"}, channels=["push"])])
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "channel_not_supported"
    assert "notifications[0].channels" in response.json()["error"]["fields"]


def test_more_items_than_allowed_is_400_before_any_item_is_validated(
    api: Any, email_template: Any, settings: Any
) -> None:
    settings.BULK_MAX_NOTIFICATIONS = 3
    response = bulk(api, [item("x")] * 4)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "notifications": ["At most 3 notifications per request."]}


def test_the_default_limit_is_50000_items(api: Any, email_template: Any) -> None:
    response = api.post(URL, {"notifications": [{}] * 50_001}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "notifications": ["At most 50000 notifications per request."]}


def test_recipients_over_all_items_are_bounded(api: Any, email_template: Any, settings: Any) -> None:
    settings.BULK_MAX_RECIPIENTS = 3
    response = bulk(api, [{"recipients": ["a", "b"], "template_id": "welcome"}] * 2)
    assert response.status_code == 400
    assert "notifications" in response.json()["error"]["fields"]


def test_the_same_recipient_in_many_items_is_upserted_once_with_the_last_fields(
    api: Any, client_tenant: Any, email_template: Any
) -> None:
    response = bulk(api, [item({"id": "same", "email": "one@example.com"}),
                          item({"id": "same", "email": "two@example.com"})])
    assert response.status_code == 202
    assert Recipient.objects.get(client=client_tenant, external_id="same").email == "two@example.com"
    assert set(Delivery.objects.values_list("address", flat=True)) == {"two@example.com"}


def test_each_recipient_gets_its_locale_version(api: Any, client_tenant: Any) -> None:
    from apps.templates.services import template_version_create

    template = TemplateFactory(client=client_tenant, key="welcome")
    template_version_create(template=template, locale="fr", subject="Bonjour {{ name }}",
                            text_body="Salut {{ name }}")
    response = bulk(api, [item({"id": "fr", "email": "fr@example.com", "locale": "fr-CA"}),
                          item({"id": "en", "email": "en@example.com", "locale": "en"})])
    assert response.status_code == 202, response.json()
    fr, en = (Delivery.objects.get(recipient__external_id=r) for r in ("fr", "en"))
    assert fr.template_version is not None and fr.template_version.locale == "fr"
    assert en.template_version is None  # the notification's own (default locale) version


def test_bulk_with_local_send_time_sets_one_due_time_per_recipient(
    api: Any, email_template: Any
) -> None:
    response = bulk(api, [
        {"recipients": [{"id": "ny", "email": "ny@example.com", "timezone": "America/New_York"},
                        {"id": "tk", "email": "tk@example.com", "timezone": "Asia/Tokyo"}],
         "template_id": "welcome", "variables": {"name": "x"}, "local_send_time": "09:00"},
    ])
    assert response.status_code == 202, response.json()
    due = {d.recipient.external_id: d.due_at for d in Delivery.objects.select_related("recipient")}
    assert due["ny"] != due["tk"]
    assert {d.status for d in Delivery.objects.all()} == {"scheduled"}


def test_each_bulk_notification_is_audited_like_a_single_send(
    api: Any, client_tenant: Any, email_template: Any
) -> None:
    from apps.audit.models import AuditLog

    response = bulk(api, [item({"id": "a", "email": "a@example.com"}),
                          item({"id": "b", "email": "b@example.com"})])

    rows = AuditLog.objects.filter(action="notification.send", client_id=client_tenant.id).order_by(
        "recipient_external_id")
    assert [str(r.notification_id) for r in rows] == [n["id"] for n in response.json()["notifications"]]
    assert [r.recipient_external_id for r in rows] == ["a", "b"]


def test_another_clients_recipient_id_is_unknown(
    api: Any, email_template: Any, other_tenant: Any
) -> None:
    RecipientFactory(client=other_tenant, external_id="theirs")
    response = bulk(api, [item("theirs")])
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unknown_recipient"
    assert list(response.json()["error"]["fields"]) == ["notifications[0].recipients[0]"]


def test_deliveries_read_back_in_request_order(api: Any, email_template: Any) -> None:
    recipients = [{"id": f"r{i}", "email": f"r{i}@example.com"} for i in range(12)]
    response = bulk(api, [{"recipients": recipients, "template_id": "welcome",
                           "variables": {"name": "x"}}])
    notification_id = response.json()["notifications"][0]["id"]
    detail = api.get(f"/api/v1/notifications/{notification_id}").json()
    assert [d["recipient"] for d in detail["deliveries"]] == [r["id"] for r in recipients]


def test_the_list_pages_through_a_large_bulk_send(api: Any, email_template: Any) -> None:
    # Cursor pagination cannot skip more than 1,000 equal timestamps: each row has its own.
    count = 1100
    response = bulk(api, [item({"id": f"u{i}", "email": f"u{i}@example.com"}) for i in range(count)])
    assert response.status_code == 202
    seen: list[str] = []
    page = api.get("/api/v1/notifications", {"page_size": 500}).json()
    while True:
        seen.extend(n["id"] for n in page["results"])
        if not page["next"]:
            break
        page = api.get(page["next"]).json()
    assert len(seen) == len(set(seen)) == count
    assert seen == [n["id"] for n in reversed(response.json()["notifications"])]  # newest first
