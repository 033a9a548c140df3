"""The audit log in the admin: support finds rows by recipient, notification, actor, action
and date range, follows them to the notification's timeline; nobody can add, change or delete
a row (superusers included, and the database refuses an UPDATE from anywhere)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from apps.audit.admin import AuditedAdminMixin
from apps.audit.context import request_scope
from apps.audit.models import AuditLog
from apps.clients.models import ApiKey, Client
from apps.notifications.services import notification_send

from .conftest import new_client, rows

pytestmark = pytest.mark.django_db

LIST = "/admin/audit/auditlog/"


def log(client: Any, when: datetime, action: str = "notification.send", **fields: Any) -> AuditLog:
    return AuditLog.objects.create(client=client, created_at=when, action=action,
                                   actor_type=fields.pop("actor_type", "api_key"), **fields)


def listed(admin_client: Any, client: Any, **params: Any) -> list[int]:
    """The rows listed for `client` (the test database may be shared with other sessions)."""
    response = admin_client.get(LIST, {"client__id__exact": str(client.pk), **params})
    assert response.status_code == 200, response
    return sorted(row.pk for row in response.context["cl"].result_list)


@pytest.fixture
def history(client_tenant: Any, admin_user: User, key: ApiKey) -> dict[str, Any]:
    notification_id = uuid.uuid4()
    march = datetime(2026, 3, 10, 12, tzinfo=UTC)
    return {
        "notification_id": notification_id,
        "send": log(client_tenant, march, recipient_external_id="ada", notification_id=notification_id,
                    actor_id=str(key.pk), actor_display=key.prefix),
        "staff": log(client_tenant, datetime(2026, 4, 2, tzinfo=UTC), "notification.cancel",
                     actor_type="user", actor_id=str(admin_user.pk), actor_display="admin",
                     notification_id=notification_id, recipient_external_id="ada"),
        "bob": log(client_tenant, march, recipient_external_id="bob", request_id="req-bob-1"),
    }


def test_search_by_recipient_notification_actor_and_action(
    admin_client: Any, client_tenant: Any, history: dict[str, Any], key: ApiKey
) -> None:
    send, staff, bob = history["send"].pk, history["staff"].pk, history["bob"].pk
    notification_id = history["notification_id"]
    assert listed(admin_client, client_tenant, q="ada") == [send, staff]
    assert listed(admin_client, client_tenant, q="recipient:bob") == [bob]
    assert listed(admin_client, client_tenant, q=str(notification_id)) == [send, staff]
    assert listed(admin_client, client_tenant, q=f"notification:{notification_id}") == [send, staff]
    assert listed(admin_client, client_tenant, q="admin") == [staff]  # a username
    assert listed(admin_client, client_tenant, q=key.prefix) == [send]  # an API key prefix
    assert listed(admin_client, client_tenant, q="actor:admin") == [staff]
    assert listed(admin_client, client_tenant, q="notification.cancel") == [staff]
    assert listed(admin_client, client_tenant, q="recipient:nobody") == []
    assert listed(admin_client, client_tenant, q="notification:not-a-uuid") == []
    # A request id (the client's X-Request-Id, or ours from a log line).
    assert listed(admin_client, client_tenant, q="request:req-bob-1") == [bob]
    assert listed(admin_client, client_tenant, q="req-bob-1") == [bob]
    assert listed(admin_client, client_tenant, q="request:req-nobody") == []


def test_date_range_and_action_filters(
    admin_client: Any, client_tenant: Any, history: dict[str, Any]
) -> None:
    march = listed(admin_client, client_tenant, created_from="2026-03-01",
                   created_to="2026-03-31")
    assert march == sorted([history["send"].pk, history["bob"].pk])
    # Both ends inclusive (dates, UTC); combined with a search.
    assert listed(admin_client, client_tenant, created_from="2026-04-02", created_to="2026-04-02",
                  q="ada") == [history["staff"].pk]
    assert listed(admin_client, client_tenant, action="notification.cancel") == [history["staff"].pk]
    response = admin_client.get(LIST, {"created_from": "2026-03-01", "q": "ada"})
    page = response.content.decode()
    assert 'type="date" name="created_from" value="2026-03-01"' in page
    assert '<input type="hidden" name="q" value="ada">' in page  # the date form keeps the search
    assert admin_client.get(LIST, {"created_from": "March"}).status_code == 302  # ?e=1


def test_rows_link_to_the_notification_timeline(admin_client: Any, history: dict[str, Any]) -> None:
    timeline = f"/admin/notifications/notification/{history['notification_id']}/change/"
    assert timeline in admin_client.get(LIST).content.decode()
    detail = admin_client.get(f"{LIST}{history['send'].pk}/change/")
    assert detail.status_code == 200
    page = detail.content.decode()
    assert timeline in page
    assert "/admin/notifications/delivery/?q=ada" in page  # the recipient's deliveries


def test_the_list_does_not_query_per_row(admin_client: Any, client_tenant: Any) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(LIST).status_code == 200
        return len(ctx.captured_queries)

    for i in range(2):
        log(new_client(), datetime(2026, 3, 1, tzinfo=UTC), notification_id=uuid.uuid4(),
            recipient_external_id=f"r{i}")
    few = queries()
    for i in range(30):
        log(new_client(), datetime(2026, 3, 2, tzinfo=UTC), notification_id=uuid.uuid4(),
            recipient_external_id=f"s{i}")
    assert queries() <= few


def test_nobody_can_add_change_or_delete_rows_in_the_admin(
    admin_client: Any, history: dict[str, Any]
) -> None:
    row = history["send"]
    assert admin_client.get(f"{LIST}add/").status_code == 403
    assert admin_client.post(f"{LIST}add/", {"action": "x"}).status_code == 403
    assert admin_client.post(f"{LIST}{row.pk}/change/", {"action": "x"}).status_code == 403
    assert admin_client.post(f"{LIST}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    response = admin_client.post(LIST, {"action": "delete_selected", "_selected_action": [row.pk],
                                        "post": "yes"})
    assert response.status_code in (200, 302)
    row.refresh_from_db()
    assert row.action == "notification.send"
    assert AuditLog.objects.filter(pk=row.pk).exists()
    assert "delete_selected" not in admin_client.get(LIST).content.decode()


def test_the_database_refuses_to_update_a_row(history: dict[str, Any]) -> None:
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditLog.objects.filter(pk=history["send"].pk).update(action="notification.cancel")
    row = history["send"]
    row.action = "edited"
    with pytest.raises(DatabaseError), transaction.atomic():
        row.save()


# --- AuditedAdminMixin -----------------------------------------------------------------------

class AuditedClientAdmin(AuditedAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    fields = ["name", "slug", "is_active"]


def test_the_mixin_records_admin_saves_and_deletes(admin_user: User) -> None:
    model_admin = AuditedClientAdmin(Client, admin.AdminSite(name="audit-test"))
    request = RequestFactory().post("/admin/clients/client/add/", REMOTE_ADDR="10.1.2.3")
    request.user = admin_user
    form_class = model_admin.get_form(request)

    with request_scope(request):
        form = form_class(data={"name": "Acme", "slug": "acme", "is_active": "on"})
        assert form.is_valid(), form.errors
        client = form.save(commit=False)
        model_admin.save_model(request, client, form, change=False)

        form = form_class(data={"name": "Acme Corp", "slug": "acme", "is_active": ""},
                          instance=Client.objects.get(pk=client.pk))
        assert form.is_valid(), form.errors
        model_admin.save_model(request, form.save(commit=False), form, change=True)
        model_admin.delete_model(request, Client.objects.get(pk=client.pk))

    [created], [updated], [deleted] = (rows(f"client.{a}") for a in ("create", "update", "delete"))
    for row in (created, updated, deleted):
        assert (row.actor_type, row.actor_display, row.ip) == ("user", "admin", "10.1.2.3")
        assert row.client_id == client.pk and row.object_id == str(client.pk)
    assert created.changes == {"name": "Acme", "slug": "acme", "is_active": True}
    assert updated.changes["before"] == {"name": "Acme", "is_active": True}
    assert updated.changes["after"] == {"name": "Acme Corp", "is_active": False}
    assert not Client.objects.filter(pk=client.pk).exists()
    assert AuditLog.objects.filter(client_id=client.pk).count() == 3  # rows outlive the client


def test_a_send_by_the_admin_through_a_service_needs_no_mixin(
    admin_user: User, client_tenant: Any, email_template: Any
) -> None:
    request = RequestFactory().post("/admin/whatever/")
    request.user = admin_user
    with request_scope(request):
        notification_send(client=client_tenant, template_id="welcome", variables={"name": "x"},
                          recipients=[{"id": "ada", "email": "ada@example.com"}])
    [row] = rows("notification.send")
    assert (row.actor_type, row.actor_display) == ("user", "admin")


def test_the_count_is_capped_and_the_whole_table_estimated(
    admin_client: Any, client_tenant: Any, monkeypatch: Any
) -> None:
    import apps.audit.admin as audit_admin

    monkeypatch.setattr(audit_admin, "COUNT_CAP", 3)
    for i in range(6):
        log(client_tenant, datetime(2026, 3, 1, tzinfo=UTC), recipient_external_id=f"r{i}")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_auditlog")
    filtered = admin_client.get(LIST, {"created_from": "2026-03-01"}).context["cl"]
    assert filtered.result_count == 3  # no COUNT(*) past the cap
    unfiltered = admin_client.get(LIST).context["cl"]
    assert unfiltered.result_count >= 6  # the planner's estimate, no COUNT(*) at all
