"""The admin: endpoints never show their secret after creation, messages and attempts are
read-only with filters, lists do not query per row, and messages can be replayed."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.webhooks.models import WebhookEndpoint, WebhookMessage
from apps.webhooks.outbound.delivery import webhook_messages_deliver
from apps.webhooks.outbound.services import webhook_endpoint_test
from tests.factories import ClientFactory
from tests.sandbox.receiver import HttpReceiver

from .support import make_endpoint

pytestmark = pytest.mark.django_db

LISTS = [
    "/admin/webhooks/webhookendpoint/",
    "/admin/webhooks/webhookmessage/",
    "/admin/webhooks/webhookattempt/",
    "/admin/webhooks/webhookmessage/?status__exact=succeeded&event_type__exact=webhook.test",
    "/admin/webhooks/webhookattempt/?succeeded__exact=1",
    "/admin/webhooks/webhookendpoint/?state=enabled",
]


def traffic(receiver: HttpReceiver, count: int) -> None:
    for _ in range(count):
        endpoint = make_endpoint(ClientFactory(), receiver.url("/hooks"))
        message = webhook_endpoint_test(endpoint=endpoint)
        webhook_messages_deliver(message_ids=[str(message.id)])


def queries_for(admin_client: Any, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = admin_client.get(url)
    assert response.status_code == 200, url
    return len(ctx.captured_queries)


@pytest.mark.parametrize("url", LISTS)
def test_list_pages_do_not_query_per_row(admin_client: Any, receiver: HttpReceiver, url: str) -> None:
    traffic(receiver, 2)
    few = queries_for(admin_client, url)
    traffic(receiver, 12)
    assert queries_for(admin_client, url) <= few


def test_pages_never_show_the_secret(admin_client: Any, endpoint: WebhookEndpoint,
                                     receiver: HttpReceiver) -> None:
    message = webhook_endpoint_test(endpoint=endpoint)
    webhook_messages_deliver(message_ids=[str(message.id)])
    pages = [
        f"/admin/webhooks/webhookendpoint/{endpoint.id}/change/",
        "/admin/webhooks/webhookendpoint/",
        f"/admin/webhooks/webhookmessage/{message.id}/change/",
        "/admin/webhooks/webhookattempt/",
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        assert endpoint.secret not in response.content.decode(), page
        assert "whsec_" not in response.content.decode(), page


def test_creating_an_endpoint_shows_its_secret_once(admin_client: Any, client_tenant: Any) -> None:
    response = admin_client.post("/admin/webhooks/webhookendpoint/add/", {
        "client": str(client_tenant.id), "url": "https://hooks.example.com/x",
        "description": "from the admin", "event_types": ["delivery.failed"],
    }, follow=True)
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.event_types == ["delivery.failed"]
    assert endpoint.secret in response.content.decode()
    again = admin_client.get(f"/admin/webhooks/webhookendpoint/{endpoint.id}/change/")
    assert endpoint.secret not in again.content.decode()


def test_the_add_form_refuses_a_private_address_when_the_guard_is_on(
    admin_client: Any, client_tenant: Any, guard_on: Any
) -> None:
    response = admin_client.post("/admin/webhooks/webhookendpoint/add/", {
        "client": str(client_tenant.id), "url": "http://169.254.169.254/latest",
    })
    assert response.status_code == 200
    assert "not allowed" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_messages_are_read_only_and_can_be_replayed(
    admin_client: Any, endpoint: WebhookEndpoint, receiver: HttpReceiver,
) -> None:
    message = webhook_endpoint_test(endpoint=endpoint)
    webhook_messages_deliver(message_ids=[str(message.id)])
    assert admin_client.post(f"/admin/webhooks/webhookmessage/{message.id}/delete/").status_code == 403
    response = admin_client.post("/admin/webhooks/webhookmessage/", {
        "action": "replay", "_selected_action": [str(message.id)]}, follow=True)
    assert response.status_code == 200
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("pending", 0)


def test_disable_and_enable_actions(admin_client: Any, endpoint: WebhookEndpoint) -> None:
    admin_client.post("/admin/webhooks/webhookendpoint/", {
        "action": "disable", "_selected_action": [str(endpoint.id)]})
    endpoint.refresh_from_db()
    assert endpoint.disabled_at is not None and "Disabled by" in endpoint.disabled_reason
    with pytest.raises(Exception, match="disabled"):  # a disabled endpoint takes no new work
        webhook_endpoint_test(endpoint=endpoint)
    admin_client.post("/admin/webhooks/webhookendpoint/", {
        "action": "enable", "_selected_action": [str(endpoint.id)]})
    endpoint.refresh_from_db()
    assert endpoint.disabled_at is None and endpoint.failing_since is None
    assert WebhookMessage.objects.count() == 0
