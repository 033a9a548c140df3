"""Every audited action writes exactly one row, by the right actor (the API key's prefix through
the API, the username through the admin, `system` from a task, `inbound` from a STOP text), in
the same transaction as the change, and without secrets or message bodies."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from apps.audit.models import AuditLog
from apps.clients.models import ApiKey
from apps.core.exceptions import ApplicationError
from apps.notifications.dispatch import deliveries_claim, delivery_record_outcome
from apps.notifications.models import Notification
from apps.notifications.providers.base import SendResult
from apps.notifications.services import notification_send
from apps.notifications.status import notifications_refresh_status
from apps.preferences.services import inbound_keyword_apply
from apps.scheduling.models import RecurringSend
from apps.scheduling.services import recurring_send_create
from apps.scheduling.tasks import recurring_send_task
from tests.factories import RecipientFactory, TemplateFactory

from .conftest import new_client, rows

pytestmark = pytest.mark.django_db

PREFIX = "nh_kkkkkkkkk"


def assert_by_key(row: AuditLog, key: ApiKey) -> None:
    assert (row.actor_type, row.actor_id, row.actor_display) == ("api_key", str(key.pk), PREFIX)
    assert row.client_id == key.client_id
    assert row.ip == "127.0.0.1" and row.user_agent == "orders-service/1.0"
    assert row.request_id


def assert_by_admin(row: AuditLog, admin_user: Any) -> None:
    assert (row.actor_type, row.actor_id, row.actor_display) == ("user", str(admin_user.pk), "admin")
    assert row.ip == "127.0.0.1"


def failed_notification(client: Any, *external_ids: str) -> Notification:
    key = f"t{Notification.objects.filter(client=client).count()}"
    TemplateFactory(client=client, key=key)
    notification = notification_send(
        client=client, template_id=key, variables={"name": "x"},
        recipients=[{"id": e, "email": f"{e}@example.com"} for e in external_ids],
    ).notification
    for delivery in notification.deliveries.all():
        attempt = deliveries_claim(delivery_ids=[str(delivery.id)])[str(delivery.id)]
        delivery_record_outcome(delivery_id=str(delivery.id), attempt=attempt,
                                result=SendResult.permanent("sendgrid", "http_500", "boom"))
    notifications_refresh_status(notification_ids=[notification.id])
    return notification


# --- notifications ---------------------------------------------------------------------------

def test_a_send_through_the_api_writes_one_row_for_the_notification_not_per_delivery(
    keyed_api: Any, key: ApiKey, email_template: Any
) -> None:
    response = keyed_api.post("/api/v1/notifications", {
        "template_id": "welcome", "variables": {"name": "Secret Santa"},
        "recipients": [{"id": f"u{i}", "email": f"u{i}@example.com"} for i in range(3)],
        "metadata": {"order": "A-1"},
    }, format="json", HTTP_X_REQUEST_ID="req-123")
    assert response.status_code == 202, response.json()

    [row] = rows("notification.send")
    assert_by_key(row, key)
    assert row.request_id == "req-123"
    assert str(row.notification_id) == response.json()["id"] == row.object_id
    assert row.recipient_external_id == ""  # three recipients: search them through deliveries
    assert row.changes["recipients"] == ["u0", "u1", "u2"]
    assert row.changes["recipient_count"] == 3 and row.changes["template"] == "welcome"
    # Variable and metadata names only; no values, no rendered content.
    assert row.changes["variables"] == ["name"] and row.changes["metadata"] == ["order"]
    assert "Secret Santa" not in json.dumps(row.changes) and "A-1" not in json.dumps(row.changes)


def test_a_send_to_one_recipient_records_who(keyed_api: Any, email_template: Any) -> None:
    keyed_api.post("/api/v1/notifications", {
        "template_id": "welcome", "variables": {"name": "x"},
        "recipients": [{"id": "ada", "email": "ada@example.com"}]}, format="json")
    [row] = rows("notification.send")
    assert row.recipient_external_id == "ada"


def test_a_refused_send_writes_no_row(keyed_api: Any, email_template: Any) -> None:
    response = keyed_api.post("/api/v1/notifications", {
        "template_id": "welcome", "variables": {"name": "x"}, "recipients": ["nobody"]},
        format="json")
    assert response.status_code == 422
    assert rows("notification.send") == []


def test_the_row_commits_and_rolls_back_with_the_send(client_tenant: Any, email_template: Any) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        notification_send(client=client_tenant, template_id="welcome", variables={"name": "x"},
                          recipients=[{"id": "ada", "email": "ada@example.com"}])
        assert len(rows("notification.send")) == 1
        raise RuntimeError("the caller's transaction fails after the send")
    assert not Notification.objects.filter(client=client_tenant).exists()
    assert rows("notification.send") == []


def test_a_send_outside_a_request_is_by_the_system(client_tenant: Any, email_template: Any) -> None:
    notification_send(client=client_tenant, template_id="welcome", variables={"name": "x"},
                      recipients=[{"id": "ada", "email": "ada@example.com"}])
    [row] = rows("notification.send")
    assert (row.actor_type, row.actor_display, row.ip) == ("system", "system", None)


def test_cancel_through_the_api(keyed_api: Any, key: ApiKey, email_template: Any) -> None:
    notification = keyed_api.post("/api/v1/notifications", {
        "template_id": "welcome", "variables": {"name": "x"},
        "recipients": [{"id": "ada", "email": "ada@example.com"}],
        "scheduled_at": (timezone.now() + timedelta(hours=1)).isoformat()}, format="json").json()
    assert keyed_api.put(f"/api/v1/notifications/{notification['id']}/cancel").status_code == 200

    [row] = rows("notification.cancel")
    assert_by_key(row, key)
    assert str(row.notification_id) == notification["id"]
    assert row.recipient_external_id == "ada"
    assert row.changes == {"cancelled_deliveries": 1}


def test_redrive_through_the_api_writes_one_row_per_notification(
    keyed_api: Any, key: ApiKey, client_tenant: Any
) -> None:
    first = failed_notification(client_tenant, "ada", "bob")
    second = failed_notification(client_tenant, "cy")
    response = keyed_api.post("/api/v1/admin/retry-failed", {}, format="json")
    assert response.json() == {"redriven": 3}

    redrives = rows("delivery.redrive")
    assert {r.notification_id: r.changes["deliveries"] for r in redrives} == {first.id: 2, second.id: 1}
    for row in redrives:
        assert_by_key(row, key)
        assert row.changes["previous_errors"] == ["http_500"]
    assert {r.recipient_external_id for r in redrives} == {"", "cy"}


def test_redrive_from_the_admin_is_by_the_admin_user(
    admin_client: Any, admin_user: Any, client_tenant: Any
) -> None:
    notification = failed_notification(client_tenant, "ada")
    admin_client.post("/admin/notifications/notification/",
                      {"action": "redrive", "_selected_action": [str(notification.id)]})
    [row] = rows("delivery.redrive")
    assert_by_admin(row, admin_user)
    assert row.notification_id == notification.id


# --- API keys ---------------------------------------------------------------------------------

def test_api_keys_created_and_revoked_in_the_admin(
    admin_client: Any, admin_user: Any, client_tenant: Any
) -> None:
    response = admin_client.post("/admin/clients/apikey/add/", {
        "client": client_tenant.pk, "name": "billing", "mode": "live", "scopes": ["send", "read"]})
    assert response.status_code == 302
    key = ApiKey.objects.get(name="billing")
    [created] = rows("api_key.create", object_id=str(key.pk))
    assert_by_admin(created, admin_user)
    assert created.client_id == client_tenant.pk
    assert created.changes == {"name": "billing", "prefix": key.prefix, "mode": "live",
                               "scopes": ["send", "read"]}
    assert key.key_hash not in json.dumps(created.changes)

    admin_client.post("/admin/clients/apikey/", {"action": "revoke", "_selected_action": [str(key.pk)]})
    admin_client.post("/admin/clients/apikey/", {"action": "revoke", "_selected_action": [str(key.pk)]})
    [revoked] = rows("api_key.revoke")  # revoking a revoked key changes nothing: no second row
    assert_by_admin(revoked, admin_user)
    assert revoked.object_id == str(key.pk)


def test_a_new_key_shown_once_never_reaches_the_audit_log(admin_client: Any, client_tenant: Any) -> None:
    response = admin_client.post("/admin/clients/apikey/add/", {
        "client": client_tenant.pk, "name": "billing", "mode": "test", "scopes": ["send"]},
        follow=True)
    raw = next(str(m).split("The new API key is ")[1].split(" ")[0]
               for m in response.context["messages"] if "The new API key is" in str(m))
    assert not any(raw in json.dumps(r.changes) for r in rows())


# --- templates -------------------------------------------------------------------------------

TEMPLATE = {"key": "order_shipped", "name": "Order shipped", "channels": ["email"],
            "version": {"subject": "Order {{ orderId }} shipped", "text_body": "Hi {{ name }}"}}


def test_template_lifecycle_through_the_api(keyed_api: Any, key: ApiKey) -> None:
    created = keyed_api.post("/api/v1/templates", TEMPLATE, format="json")
    assert created.status_code == 201, created.json()
    template_id = created.json()["id"]
    assert [r.action for r in rows() if r.action != "api_key.create"] == [
        "template.create", "template.version.create", "template.version.publish"]
    [version_row] = rows("template.version.create")
    assert version_row.changes["required_variables"] == ["name", "orderId"]
    assert "Hi {{" not in json.dumps(version_row.changes)  # no bodies, no subjects

    keyed_api.put(f"/api/v1/templates/{template_id}", {"name": "Shipped!"}, format="json")
    [update] = rows("template.update")
    assert_by_key(update, key)
    assert update.changes["before"] == {"name": "Order shipped"}
    assert update.changes["after"] == {"name": "Shipped!"}

    keyed_api.post(f"/api/v1/templates/{template_id}/versions",
                   {"subject": "v2", "text_body": "two", "publish": False}, format="json")
    keyed_api.post(f"/api/v1/templates/{template_id}/versions/2/publish")
    keyed_api.post(f"/api/v1/templates/{template_id}/versions/1/publish")
    publishes = rows("template.version.publish")
    assert [r.changes["version"] for r in publishes] == [1, 2]
    [rollback] = rows("template.version.rollback")
    assert (rollback.changes["version"], rollback.changes["previous_version"]) == (1, 2)

    assert keyed_api.delete(f"/api/v1/templates/{template_id}").status_code == 204
    [deleted] = rows("template.delete")
    assert_by_key(deleted, key)
    assert deleted.object_id == template_id and deleted.changes["key"] == "order_shipped"


def test_an_update_that_changes_nothing_writes_nothing(keyed_api: Any) -> None:
    template_id = keyed_api.post("/api/v1/templates", TEMPLATE, format="json").json()["id"]
    keyed_api.put(f"/api/v1/templates/{template_id}", {"name": "Order shipped"}, format="json")
    assert rows("template.update") == []


def test_template_versions_added_in_the_admin_are_by_the_admin(
    admin_client: Any, admin_user: Any, client_tenant: Any
) -> None:
    template = TemplateFactory(client=client_tenant, key="welcome")
    response = admin_client.post("/admin/templates/templateversion/add/", {
        "template": template.pk, "locale": "en", "then": "publish", "subject": "New",
        "text_body": "Hello", "push_data": "{}"})
    assert response.status_code == 302, response.content.decode()[:2000]
    [created] = rows("template.version.create", changes__version=2)
    [published] = rows("template.version.publish", changes__version=2)
    assert_by_admin(created, admin_user)
    assert_by_admin(published, admin_user)


# --- preferences ------------------------------------------------------------------------------

def test_preference_changes_through_the_api(keyed_api: Any, key: ApiKey, ada: Any) -> None:
    keyed_api.post("/api/v1/preferences/ada/opt-out", {"category": "marketing"}, format="json")
    keyed_api.post("/api/v1/preferences/ada/opt-out", {"category": "marketing"}, format="json")
    [opt_out] = rows("preference.opt_out")  # the second call changed nothing
    assert_by_key(opt_out, key)
    assert opt_out.recipient_external_id == "ada"
    assert opt_out.changes["source"] == "api"
    assert opt_out.changes["changes"] == [{"action": "opt_out", "category": "marketing"}]

    keyed_api.post("/api/v1/preferences/ada/opt-in", {"category": "marketing"}, format="json")
    assert len(rows("preference.opt_in")) == 1

    keyed_api.put("/api/v1/preferences/ada", {
        "channels": {"sms": {"enabled": False}},
        "quiet_hours": {"start": "22:00", "end": "07:00"}}, format="json")
    [update] = rows("preference.update")
    assert {c["action"] for c in update.changes["changes"]} == {"opt_out", "update"}


def test_a_stop_text_is_recorded_as_inbound(ada: Any) -> None:
    other = RecipientFactory(client=new_client(), external_id="ada-elsewhere",
                             phone="+14155550100")  # another client
    inbound_keyword_apply(from_="+14155550100", body="STOP")

    opt_outs = rows("preference.opt_out")
    assert {(r.client_id, r.recipient_external_id) for r in opt_outs} == {
        (ada.client_id, "ada"), (other.client_id, "ada-elsewhere")}
    for row in opt_outs:
        assert row.actor_type == "inbound"
        assert row.actor_display == "sms_keyword:+14***00"  # masked
        assert row.changes["changes"] == [{"action": "opt_out", "channel": "sms"}]


def test_an_unsubscribe_click_is_inbound_and_keeps_the_token_out(ada: Any) -> None:
    from urllib.parse import urlsplit

    from django.test import Client as HttpClient

    from apps.preferences.unsubscribe import unsubscribe_url

    path = urlsplit(unsubscribe_url(recipient=ada, category="marketing")).path
    response = HttpClient().post(path, {"List-Unsubscribe": "One-Click"},
                                 HTTP_USER_AGENT="Gmail one-click", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 200
    [row] = rows("preference.opt_out")
    assert (row.actor_type, row.actor_display) == ("inbound", "link:a***@example.com")
    assert (row.ip, row.user_agent, row.recipient_external_id) == (
        "203.0.113.9", "Gmail one-click", "ada")
    token = path.rstrip("/").rsplit("/", 1)[-1]
    assert token not in f"{row.actor_display} {row.changes} {row.user_agent}"


# --- segments and schedules ---------------------------------------------------------------------

def test_segment_lifecycle_through_the_api(keyed_api: Any, key: ApiKey) -> None:
    definition = {"all": [{"attribute": "plan", "op": "equals", "value": "pro"}]}
    created = keyed_api.post("/api/v1/segments", {"name": "Pro", "key": "pro",
                                                  "definition": definition}, format="json")
    assert created.status_code == 201, created.json()
    keyed_api.put("/api/v1/segments/pro", {"name": "Paying"}, format="json")
    keyed_api.delete("/api/v1/segments/pro")

    [create], [update], [delete] = (rows(f"segment.{a}") for a in ("create", "update", "delete"))
    for row in (create, update, delete):
        assert_by_key(row, key)
        assert row.object_id == created.json()["id"]
    assert create.changes["definition"] == definition
    assert update.changes == {"key": "pro", "before": {"name": "Pro"}, "after": {"name": "Paying"}}


SCHEDULE = {"name": "Digest", "template_id": "welcome", "variables": {"name": "secret value"},
            "recipient_ids": ["ada"], "minute": "0", "hour": "9", "timezone": "Europe/Paris"}


def test_schedule_lifecycle_through_the_api(
    keyed_api: Any, key: ApiKey, ada: Any, email_template: Any
) -> None:
    schedule_id = keyed_api.post("/api/v1/schedules", SCHEDULE, format="json").json()["id"]
    keyed_api.put(f"/api/v1/schedules/{schedule_id}", {"hour": "18"}, format="json")
    run = keyed_api.post(f"/api/v1/schedules/{schedule_id}/run")
    assert run.status_code == 202, run.json()
    keyed_api.delete(f"/api/v1/schedules/{schedule_id}")

    [create], [update], [ran], [delete] = (rows(f"schedule.{a}")
                                           for a in ("create", "update", "run", "delete"))
    for row in (create, update, ran, delete):
        assert_by_key(row, key)
        assert row.object_id == schedule_id
    assert create.changes["variables"] == ["name"]  # names only
    assert "secret value" not in json.dumps(create.changes)
    assert update.changes["before"] == {"hour": "9"} and update.changes["after"] == {"hour": "18"}
    assert ran.changes["status"] == "sent" and ran.changes["manual"] is True
    assert ran.changes["notification_ids"] == run.json()["notifications"]
    [sent] = rows("notification.send")
    assert_by_key(sent, key)


def test_a_scheduled_run_from_beat_is_by_the_system(
    client_tenant: Any, ada: Any, email_template: Any
) -> None:
    schedule = recurring_send_create(client=client_tenant, name="Every minute",
                                     template=email_template, variables={"name": "x"},
                                     recipient_ids=["ada"], minute="*", hour="*")
    result = recurring_send_task.apply(kwargs={"recurring_send_id": str(schedule.id)})
    assert result.get()["status"] == "sent"

    [ran] = rows("schedule.run")
    [sent] = rows("notification.send")
    for row in (ran, sent):
        assert (row.actor_type, row.actor_display) == ("system", "scheduling.recurring_send_task")
        assert row.request_id == result.id  # the task id
        assert row.client_id == client_tenant.pk
    assert sent.recipient_external_id == "ada"


def test_run_now_in_the_admin_is_by_the_admin(
    admin_client: Any, admin_user: Any, client_tenant: Any, ada: Any, email_template: Any
) -> None:
    schedule = recurring_send_create(client=client_tenant, name="Digest", template=email_template,
                                     variables={"name": "x"}, recipient_ids=["ada"])
    admin_client.post("/admin/scheduling/recurringsend/",
                      {"action": "run_now", "_selected_action": [str(schedule.id)]})
    [ran] = rows("schedule.run")
    assert_by_admin(ran, admin_user)
    assert ran.changes["manual"] is True


def test_a_refused_run_is_recorded_without_its_notifications(
    client_tenant: Any, ada: Any, email_template: Any
) -> None:
    schedule = recurring_send_create(client=client_tenant, name="Digest", template=email_template,
                                     variables={"name": "x"}, recipient_ids=["ada"])
    RecurringSend.objects.filter(pk=schedule.pk).update(variables={})  # the template needs `name`
    schedule.refresh_from_db()
    from apps.scheduling.services import recurring_send_run

    assert recurring_send_run(recurring_send=schedule, manual_key="x").status == "failed"
    [ran] = rows("schedule.run")
    assert ran.changes["status"] == "failed" and "missing_variables" in ran.changes["error"]
    assert rows("notification.send") == []


def test_a_service_error_leaves_no_row(client_tenant: Any, email_template: Any) -> None:
    with pytest.raises(ApplicationError):
        recurring_send_create(client=client_tenant, name="Bad", template=email_template,
                              variables={}, recipient_ids=["ada"])
    assert rows("schedule.create") == []
