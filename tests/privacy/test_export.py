"""Export: everything NotifyHub holds about one of the client's recipients, as one JSON
document — and nothing about anyone else."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditLog
from apps.notifications.dispatch import deliveries_claim, delivery_record_outcome
from apps.notifications.models import Notification
from apps.notifications.providers.base import SendResult
from apps.notifications.services import notification_send
from apps.privacy import selectors
from apps.recipients.models import Recipient
from apps.webhooks.outbound.services import webhook_endpoint_create
from tests.factories import TemplateFactory

from .support import ADA, BOB, History, export_of

pytestmark = pytest.mark.django_db

SECTIONS = ["format", "generated_at", "client", "recipient", "devices", "preferences",
            "consent_history", "suppressions", "notifications", "deliveries", "inbox_messages",
            "audit_log"]


def test_export_holds_every_section_of_her_data(history: History) -> None:
    response = history.api.get("/api/v1/recipients/ada/export")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    doc = export_of(response)
    assert list(doc) == SECTIONS
    assert doc["recipient"]["email"] == ADA["email"]
    assert doc["recipient"]["attributes"] == {"first_name": ADA["first_name"], "plan": "pro"}
    assert [d["token"] for d in doc["devices"]] == [ADA["token"]]
    assert doc["preferences"]["stored"] is True
    assert doc["preferences"]["categories"] == {"marketing": False, "news": False}
    assert doc["preferences"]["channels"]["whatsapp"]["enabled"] is False
    assert {(c["source"], c["action"]) for c in doc["consent_history"]} == {
        ("api", "opt_out"), ("whatsapp_keyword", "opt_out"), ("whatsapp_keyword", "confirmed"),
        ("link", "opt_out")}
    assert {(s["channel"], s["category"], s["address"]) for s in doc["suppressions"]} == {
        ("sms", "", ADA["phone"]), ("email", "", ADA["email"]),
        ("whatsapp", "", ADA["whatsapp"]), ("email", "news", ADA["email"])}
    notifications = {n["id"]: n for n in doc["notifications"]}
    confirmation = Notification.objects.get(category="opt_out_confirmation")  # her STOP's
    assert set(notifications) == {str(history.single.id), str(history.shared.id),
                                  str(history.scheduled.id), str(confirmation.id)}
    single = notifications[str(history.single.id)]
    assert single["template"] == {"key": "alert", "version": 1, "locale": "en"}
    assert single["variables"] == {"name": ADA["first_name"], "code": "1234"}
    assert single["shared_with_other_recipients"] is False
    assert notifications[str(history.shared.id)]["shared_with_other_recipients"] is True
    deliveries = doc["deliveries"]
    assert len(deliveries) == 7  # 6 sends and her WhatsApp STOP's confirmation
    sms = next(d for d in deliveries if d["channel"] == "sms")
    assert (sms["address"], sms["status"], sms["provider"], sms["error_code"]) == (
        ADA["phone"], "failed", "twilio_sms", "21211")
    assert [e["event"] for e in sms["events"]] == ["accepted", "claimed", "failed"]
    email = next(d for d in deliveries if d["channel"] == "email"
                 and d["notification_id"] == str(history.single.id))
    assert {m["event_type"] for m in email["webhook_messages"]} == {"delivery.sent", "delivery.clicked"}
    assert {row["action"] for row in doc["audit_log"]} >= {
        "notification.send", "preference.opt_out", "recipient.export"}


def test_export_holds_nothing_of_another_recipient_or_client(
    history: History, other_client_api: tuple[Any, Any]
) -> None:
    text = b"".join(history.api.get("/api/v1/recipients/ada/export").streaming_content).decode()
    assert BOB["email"] not in text and BOB["phone"] not in text
    assert "someone.else@example.net" not in text
    bob_deliveries = [str(d.id) for d in history.bob.deliveries.all()]
    assert bob_deliveries and not any(i in text for i in bob_deliveries)


def test_another_clients_or_an_unknown_id_is_404(
    history: History, other_client_api: tuple[Any, Any]
) -> None:
    _, other_api = other_client_api
    assert other_api.get("/api/v1/recipients/bob/export").status_code == 404
    response = history.api.get("/api/v1/recipients/nobody/export")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_an_export_is_recorded_in_the_audit_log(history: History) -> None:
    export_of(history.api.get("/api/v1/recipients/ada/export"))
    row = AuditLog.objects.get(action="recipient.export")
    assert (row.recipient_external_id, row.actor_type) == ("ada", "api_key")


def _recipient_with_deliveries(client: Any, external_id: str, count: int) -> Recipient:
    """`count` single sends to one recipient, each sent (events) with a webhook message."""
    for _ in range(count):
        notification = notification_send(
            client=client, recipients=[{"id": external_id, "email": f"{external_id}@example.org"}],
            template_id="welcome", variables={"name": "x"}).notification
        delivery = notification.deliveries.get()
        attempt = deliveries_claim(delivery_ids=[str(delivery.id)])[str(delivery.id)]
        delivery_record_outcome(delivery_id=str(delivery.id), attempt=attempt,
                                result=SendResult.sent("sendgrid", f"SG-{delivery.id}"))
    return Recipient.objects.get(client=client, external_id=external_id)


def _export_queries(recipient: Recipient) -> tuple[int, dict[str, Any]]:
    with CaptureQueriesContext(connection) as queries:
        doc = json.loads("".join(selectors.recipient_export(recipient=recipient)))
    return len(queries), doc


def test_the_query_count_does_not_grow_with_the_history(client_tenant: Any) -> None:
    TemplateFactory(client=client_tenant, key="welcome")
    webhook_endpoint_create(client=client_tenant, url="http://127.0.0.1:9/hooks")
    small = _recipient_with_deliveries(client_tenant, "small", 2)
    large = _recipient_with_deliveries(client_tenant, "large", 30)

    small_queries, small_doc = _export_queries(small)
    large_queries, large_doc = _export_queries(large)

    assert len(small_doc["deliveries"]) == 2 and len(large_doc["deliveries"]) == 30
    assert all(len(d["events"]) == 3 and len(d["webhook_messages"]) == 1
               for d in large_doc["deliveries"])
    assert large_queries == small_queries <= 15


def test_long_histories_are_read_in_batches_newest_first_without_gaps(
    client_tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    TemplateFactory(client=client_tenant, key="welcome")
    webhook_endpoint_create(client=client_tenant, url="http://127.0.0.1:9/hooks")
    recipient = _recipient_with_deliveries(client_tenant, "ada", 23)
    _, whole = _export_queries(recipient)
    monkeypatch.setattr(selectors, "EXPORT_BATCH_SIZE", 5)

    queries, batched = _export_queries(recipient)

    ids = [d["id"] for d in batched["deliveries"]]
    assert ids == [d["id"] for d in whole["deliveries"]] and len(set(ids)) == 23
    created = [d["created_at"] for d in batched["deliveries"]]
    assert created == sorted(created, reverse=True)
    assert [n["id"] for n in batched["notifications"]] == [n["id"] for n in whole["notifications"]]
    # 5 batches of deliveries at 3 queries each, 5 of notifications
    assert queries > 20


def test_admin_action_downloads_the_same_document(history: History, admin_client: Any) -> None:
    response = admin_client.post("/admin/recipients/recipient/",
                                 {"action": "gdpr_export", "_selected_action": [history.ada.pk]})
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="gdpr-export-')
    doc = export_of(response)
    assert list(doc) == SECTIONS and doc["recipient"]["email"] == ADA["email"]
    row = AuditLog.objects.get(action="recipient.export")
    assert (row.actor_type, row.actor_display) == ("user", "admin")


def test_admin_export_wants_exactly_one_recipient(history: History, admin_client: Any) -> None:
    response = admin_client.post(
        "/admin/recipients/recipient/",
        {"action": "gdpr_export", "_selected_action": [history.ada.pk, history.bob.pk]}, follow=True)
    assert "Select exactly one recipient" in response.content.decode()
    assert not AuditLog.objects.filter(action="recipient.export").exists()


def test_management_command_prints_the_document(history: History, tmp_path: Any) -> None:
    out = io.StringIO()
    call_command("gdpr_export", "--client", history.client.slug, "ada", stdout=out)
    assert json.loads(out.getvalue())["recipient"]["phone"] == ADA["phone"]
    target = tmp_path / "ada.json"
    call_command("gdpr_export", "--client", history.client.slug, "ada", "-o", str(target),
                 stderr=io.StringIO())
    assert json.loads(target.read_text())["recipient"]["whatsapp"] == ADA["whatsapp"]
    with pytest.raises(Exception, match="not found"):
        call_command("gdpr_export", "--client", history.client.slug, "nobody")
