"""Recipient and device writes through the API are in the audit log, in the same transaction:
`recipient.upsert` only when something changed (field names, never the values),
`device.register` and `device.remove` (never the push token)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.audit.models import AuditLog
from apps.notifications.services import notification_send
from apps.recipients.models import Recipient
from tests.factories import RecipientFactory, TemplateFactory

pytestmark = pytest.mark.django_db


def rows(client: Any, action: str) -> list[AuditLog]:
    return list(AuditLog.objects.filter(client_id=client.pk, action=action).order_by("id"))


def test_put_records_created_and_changed_field_names_only(api: Any, client_tenant: Any) -> None:
    api.put("/api/v1/recipients/ada", {"email": "ada@example.com", "phone": "+14155550100",
                                       "attributes": {"plan": "pro"}}, format="json")
    api.put("/api/v1/recipients/ada", {"email": "ada@example.com", "phone": "+14155550100"},
            format="json")  # nothing changed
    api.put("/api/v1/recipients/ada", {"email": "lovelace@example.com", "locale": "en"},
            format="json")  # only the email changed

    created, updated = rows(client_tenant, "recipient.upsert")
    recipient = Recipient.objects.get(client=client_tenant, external_id="ada")
    assert (created.recipient_external_id, created.object_id) == ("ada", str(recipient.pk))
    assert created.changes == {"created": True, "fields": ["attributes", "email", "phone"]}
    assert (updated.object_id, updated.actor_type) == (str(recipient.pk), "api_key")
    assert updated.changes == {"created": False, "fields": ["email"]}
    text = str(created.changes) + str(updated.changes)
    assert "example.com" not in text and "+1415" not in text and "'pro'" not in text


def test_inline_recipients_of_a_send_are_recorded_once_per_request(client_tenant: Any) -> None:
    TemplateFactory(client=client_tenant, key="welcome")
    RecipientFactory(client=client_tenant, external_id="bob", email="bob@example.com")
    notification_send(client=client_tenant, template_id="welcome", variables={"name": "x"},
                      recipients=[{"id": "ann", "email": "ann@example.com"},
                                  {"id": "bob", "email": "bob@example.com"},  # unchanged
                                  {"id": "cy", "email": "cy@example.com", "phone": "+14155550101"}])
    [row] = rows(client_tenant, "recipient.upsert")
    assert row.changes == {"created": ["ann", "cy"], "updated": [], "fields": ["email", "phone"],
                           "count": 2}
    notification_send(client=client_tenant, template_id="welcome", variables={"name": "x"},
                      recipients=[{"id": "ann", "email": "ann@example.com"}])
    assert len(rows(client_tenant, "recipient.upsert")) == 1


def test_device_register_and_remove(api: Any, client_tenant: Any) -> None:
    RecipientFactory(client=client_tenant, external_id="ada")
    RecipientFactory(client=client_tenant, external_id="bob")
    url = "/api/v1/recipients/{}/devices"
    token = "fcm-token-" + "x" * 40
    api.post(url.format("ada"), {"token": token, "platform": "android"}, format="json")
    api.post(url.format("ada"), {"token": token, "platform": "android"}, format="json")  # no change
    api.post(url.format("bob"), {"token": token, "platform": "android"}, format="json")  # moved
    api.delete(url.format("bob"), {"token": token}, format="json")
    api.delete(url.format("bob"), {"token": token}, format="json")  # 404: nothing to remove

    first, moved = rows(client_tenant, "device.register")
    [removed] = rows(client_tenant, "device.remove")
    assert (first.recipient_external_id, first.changes) == ("ada", {"created": True, "platform": "android"})
    assert moved.recipient_external_id == "bob"
    assert moved.changes == {"created": False, "platform": "android", "reactivated": False,
                             "moved_from_another_recipient": True}
    assert removed.recipient_external_id == "bob" and removed.object_id == first.object_id
    assert all(token not in str(r.changes) for r in (first, moved, removed))
