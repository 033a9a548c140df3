"""Every change to a client's webhook endpoints is in the audit log, in the change's own
transaction: create, delete, secret rotation, test ping, replay (API and admin), disable and
re-enable. Never the secret, nor the URL's query string."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from apps.audit.models import AuditLog
from apps.clients.models import ApiKey
from apps.webhooks.models import WebhookEndpoint, WebhookMessage
from apps.webhooks.outbound.services import webhook_endpoint_disable, webhook_messages_replay_selected
from tests.sandbox.receiver import HttpReceiver

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhooks"


def rows(endpoint_id: Any) -> list[AuditLog]:
    return list(AuditLog.objects.filter(object_type="webhook_endpoint", object_id=str(endpoint_id))
                .order_by("id"))


def test_endpoint_changes_through_the_api_are_audited(api: APIClient, client_tenant: Any,
                                                      receiver: HttpReceiver) -> None:
    url = receiver.url("/hooks") + "?token=receiver-secret"
    created = api.post(URL, {"url": url, "events": ["delivery.failed"]}, format="json").json()
    endpoint_id = created["id"]
    rotated = api.post(f"{URL}/{endpoint_id}/rotate-secret").json()
    api.post(f"{URL}/{endpoint_id}/test")
    message = WebhookMessage.objects.get(endpoint_id=endpoint_id)
    api.post(f"{URL}/{endpoint_id}/replay", {"message_id": str(message.id)}, format="json")
    api.delete(f"{URL}/{endpoint_id}")

    log = rows(endpoint_id)
    assert [r.action for r in log] == ["webhook.create", "webhook.rotate_secret", "webhook.test",
                                       "webhook.replay", "webhook.delete"]
    key = ApiKey.objects.get(client=client_tenant)
    for row in log:
        assert (row.actor_type, row.actor_id, row.client_id) == ("api_key", str(key.pk), client_tenant.pk)
        assert row.changes["url"] == receiver.url("/hooks")  # no query string
        text = str(row.changes)
        assert "receiver-secret" not in text
        assert created["secret"] not in text and rotated["secret"] not in text
    assert log[0].changes["event_types"] == ["delivery.failed"]
    assert log[2].changes["message_id"] == str(message.id)
    assert log[3].changes["replayed"] == 1
    assert log[4].changes["dropped_messages"] == 1  # the replayed ping was still pending


def test_a_refused_change_leaves_no_row(api: APIClient, endpoint: WebhookEndpoint) -> None:
    webhook_endpoint_disable(endpoint_id=endpoint.id, reason="410 Gone")
    assert api.post(f"{URL}/{endpoint.id}/test").status_code == 409
    assert [r.action for r in rows(endpoint.id)] == ["webhook.create", "webhook.disable"]
    assert rows(endpoint.id)[-1].changes["reason"] == "410 Gone"


def test_a_replay_that_replays_nothing_writes_nothing(api: APIClient, endpoint: WebhookEndpoint) -> None:
    response = api.post(f"{URL}/{endpoint.id}/replay", {"since": "2000-01-01T00:00:00Z"}, format="json")
    assert response.json() == {"replayed": 0}
    assert [r.action for r in rows(endpoint.id)] == ["webhook.create"]


def test_admin_disable_enable_and_replay_are_audited_as_the_staff_user(
        admin_client: Any, admin_user: Any, api: APIClient, endpoint: WebhookEndpoint) -> None:
    api.post(f"{URL}/{endpoint.id}/test")
    message = WebhookMessage.objects.get(endpoint=endpoint)
    endpoints = "/admin/webhooks/webhookendpoint/"
    admin_client.post("/admin/webhooks/webhookmessage/",
                      {"action": "replay", "_selected_action": [str(message.id)]})
    admin_client.post(endpoints, {"action": "disable", "_selected_action": [str(endpoint.id)]})
    admin_client.post(endpoints, {"action": "enable", "_selected_action": [str(endpoint.id)]})

    log = rows(endpoint.id)[-3:]
    assert [r.action for r in log] == ["webhook.replay", "webhook.disable", "webhook.enable"]
    assert {(r.actor_type, r.actor_display) for r in log} == {("user", admin_user.username)}
    assert log[0].changes["message_ids"] == [str(message.id)]


def test_the_row_rolls_back_with_its_change(endpoint: WebhookEndpoint) -> None:
    message = WebhookMessage.objects.create(endpoint=endpoint, event_type="webhook.test", payload={})
    with pytest.raises(RuntimeError), transaction.atomic():
        webhook_messages_replay_selected(message_ids=[message.id])
        raise RuntimeError
    assert [r.action for r in rows(endpoint.id)] == ["webhook.create"]
