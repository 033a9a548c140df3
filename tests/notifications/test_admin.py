"""The admin console: pages render, lists do not issue a query per row, history is read-only."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.notifications.models import Delivery, Notification
from apps.notifications.services import notification_send
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db

LISTS = [
    "/admin/notifications/notification/",
    "/admin/notifications/delivery/",
    "/admin/recipients/recipient/",
    "/admin/templates/template/",
    "/admin/templates/templateversion/",
    "/admin/clients/apikey/",
]


def make_notifications(client: Any, count: int) -> None:
    for i in range(count):
        notification_send(client=client, template_id="welcome", variables={"name": "x"},
                          recipients=[{"id": f"n{i}", "email": f"n{i}@example.com"}])


def queries_for(admin_client: Any, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = admin_client.get(url)
    assert response.status_code == 200, url
    return len(ctx.captured_queries)


@pytest.mark.parametrize("url", LISTS)
def test_list_pages_do_not_query_per_row(admin_client: Any, client_tenant: Any, url: str) -> None:
    TemplateFactory(client=client_tenant, key="welcome")
    make_notifications(client_tenant, 2)
    few = queries_for(admin_client, url)
    make_notifications(client_tenant, 25)
    assert queries_for(admin_client, url) <= few


def test_notification_page_shows_deliveries_and_timeline(admin_client: Any, client_tenant: Any) -> None:
    TemplateFactory(client=client_tenant, key="welcome")
    make_notifications(client_tenant, 1)
    notification = Notification.objects.get()
    response = admin_client.get(f"/admin/notifications/notification/{notification.id}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "n0" in page and "accepted" in page
    assert f"notification__id__exact={notification.id}&amp;status__exact=pending" in page
    listing = admin_client.get("/admin/notifications/delivery/",
                               {"notification__id__exact": str(notification.id)})
    assert listing.status_code == 200
    delivery = Delivery.objects.get()
    assert str(delivery.id) in listing.content.decode()
    assert admin_client.get(f"/admin/notifications/delivery/{delivery.id}/change/").status_code == 200


def test_history_cannot_be_changed_or_deleted_from_the_admin(admin_client: Any, client_tenant: Any) -> None:
    TemplateFactory(client=client_tenant, key="welcome")
    make_notifications(client_tenant, 1)
    notification = Notification.objects.get()
    assert admin_client.get("/admin/notifications/notification/add/").status_code == 403
    assert admin_client.get(f"/admin/notifications/notification/{notification.id}/delete/").status_code == 403
    admin_client.post(f"/admin/notifications/notification/{notification.id}/change/", {"status": "failed"})
    notification.refresh_from_db()
    assert notification.status == "pending"


def test_search_by_a_non_uuid_term_does_not_break(admin_client: Any) -> None:
    for url in ("/admin/notifications/notification/", "/admin/notifications/delivery/"):
        assert admin_client.get(url, {"q": "not-a-uuid"}).status_code == 200


def test_admin_home_charts_delivery_outcomes_latency_and_queue_depth(
    admin_client: Any, client_tenant: Any, clean_sandbox: Any
) -> None:
    from apps.notifications.dispatch import deliveries_dispatch

    TemplateFactory(client=client_tenant, key="welcome")
    make_notifications(client_tenant, 3)
    deliveries_dispatch(delivery_ids=[str(d.id) for d in Delivery.objects.all()])

    page = admin_client.get("/admin/").content.decode()

    assert "Delivery outcomes per minute" in page
    assert "<strong>3</strong> sent" in page
    assert page.count("<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\"") == 3
    assert "sent: 3" in page  # the bar for this minute carries its value
    assert "Queue depth now" in page


def test_adding_a_template_version_in_the_admin_appends_and_publishes_it(
    admin_client: Any, client_tenant: Any
) -> None:
    template = TemplateFactory(client=client_tenant, key="welcome")
    response = admin_client.post("/admin/templates/templateversion/add/", {
        "template": str(template.id), "locale": "en", "subject": "v2 {{ name }}",
        "text_body": "Hello", "html_body": "", "sms_body": "SMS {{ code }}", "whatsapp_body": "",
        "whatsapp_content_sid": "", "push_title": "", "push_body": "", "push_data": "{}",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    template.refresh_from_db()
    assert template.active_version.version == 2
    assert template.active_version.required_variables == ["code", "name"]


def test_lifting_a_suppression_is_audited_with_the_address_masked(admin_client: Any, admin_user: Any,
                                                                   client_tenant: Any) -> None:
    from apps.audit.models import AuditLog
    from apps.notifications.models import Suppression

    suppression = Suppression.objects.create(client=client_tenant, channel="email",
                                             address="jane.doe@example.com", reason="bounce")
    response = admin_client.post(f"/admin/notifications/suppression/{suppression.pk}/delete/",
                                 {"post": "yes"})
    assert response.status_code == 302
    assert not Suppression.objects.filter(pk=suppression.pk).exists()
    [row] = AuditLog.objects.filter(action="suppression.delete", object_id=str(suppression.pk))
    assert (row.actor_display, row.client_id) == (admin_user.username, client_tenant.pk)
    assert row.changes["address"] == "j***@example.com"
    assert (row.changes["channel"], row.changes["reason"]) == ("email", "bounce")
    assert "jane.doe" not in str(row.changes)


def test_support_finds_a_notification_by_the_request_id_of_its_send(
    admin_client: Any, api: Any, client_tenant: Any,
) -> None:
    TemplateFactory(client=client_tenant, key="welcome")

    def send(**headers: str) -> tuple[str, str]:
        response = api.post("/api/v1/notifications", {
            "recipients": [{"id": "ada", "email": "ada@example.com"}], "template_id": "welcome",
            "variables": {"name": "Ada"}}, format="json", **headers)
        assert response.status_code == 202
        return response.json()["id"], response["X-Request-Id"]

    chosen, chosen_request_id = send(HTTP_X_REQUEST_ID="checkout-7f3a.retry-2")
    generated, generated_request_id = send()  # no X-Request-Id: the one we answered with
    assert chosen_request_id == "checkout-7f3a.retry-2"

    def found(term: str) -> list[str]:
        response = admin_client.get("/admin/notifications/notification/", {"q": term})
        assert response.status_code == 200
        return [str(n.id) for n in response.context["cl"].result_list]

    assert found("checkout-7f3a.retry-2") == [chosen]
    assert found(generated_request_id) == [generated]  # a hex UUID, not a notification id
    assert found(chosen) == [chosen]  # the notification id still finds it
    assert found("checkout-unknown") == []
