"""Erasure: the recipient's personal data leaves every table (and never reaches the logs); what
must stay (history, suppressions, audit) stays with a tombstone id."""

from __future__ import annotations

import io
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from apps.audit.models import AuditLog
from apps.notifications.dispatch import deliveries_claim
from apps.notifications.models import Delivery, DeliveryEvent, DeliveryStatus, Notification, Suppression
from apps.notifications.receipts import ProviderEvent, delivery_receipts_apply
from apps.notifications.redrive import deliveries_redrive, failed_deliveries
from apps.preferences.caps import cap_key
from apps.preferences.models import ConsentRecord, PreferenceProfile
from apps.preferences.snapshot import cache_key
from apps.privacy.tombstones import is_tombstone
from apps.recipients.models import Device, Recipient
from apps.webhooks.models import WebhookMessage

from .support import ADA, BOB, History, pii_values, tables_containing

pytestmark = pytest.mark.django_db


def erase(history: History) -> dict[str, Any]:
    response = history.api.post("/api/v1/recipients/ada/erase")
    assert response.status_code == 200, response.content
    return response.json()


def test_erasure_leaves_no_personal_data_in_any_table_or_log(
    history: History, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a history that holds her data in many tables (the scan can see it)
    before = {value: tables_containing(value) for value in pii_values()}
    assert {"recipients_recipient", "notifications_delivery", "notifications_deliveryevent",
            "notifications_suppression", "preferences_consentrecord", "recipients_device",
            "webhooks_webhookmessage"} <= set().union(*before.values())

    body = erase(history)

    # Then no table holds her email, phone, WhatsApp number, device token or attribute values
    assert {value: tables_containing(value) for value in pii_values()} == {v: {} for v in pii_values()}
    # … nor did any log line of the whole flow (send, outcomes, receipts, STOP, erase)
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert caplog.records, "nothing was logged: the check below would prove nothing"
    assert [v for v in pii_values() if v.lower() in logged.lower()] == []
    # … while bob, at the same client, keeps his
    assert tables_containing(BOB["email"]).get("recipients_recipient") == 1
    assert is_tombstone(body["recipient"])
    assert body["counts"]["deliveries_scrubbed"] == 7  # 6 sends and her STOP's confirmation


def test_an_address_she_had_before_goes_too(history: History) -> None:
    # Her email changed after the sends; the bounce suppression no longer points at a delivery.
    assert history.api.put("/api/v1/recipients/ada", {"email": "ada.new.q3@example.org"},
                           format="json").status_code == 200
    Suppression.objects.filter(channel="email").update(source_delivery=None)

    erase(history)

    assert tables_containing(ADA["email"]) == {}
    assert tables_containing("ada.new.q3@example.org") == {}


def test_the_history_stays_under_a_tombstone_id(history: History) -> None:
    body = erase(history)
    tombstone = Recipient.objects.get(client=history.client, external_id=body["recipient"])

    assert (tombstone.email, tombstone.phone, tombstone.whatsapp, tombstone.attributes) == ("", "", "", {})
    assert (tombstone.locale, tombstone.timezone) == ("en", "UTC")
    deliveries = Delivery.objects.filter(recipient=tombstone)
    assert deliveries.count() == 7  # 6 sends and her WhatsApp STOP's confirmation
    assert set(deliveries.values_list("address", "error_message").distinct()) == {("", "")}
    by_channel = {d.channel: d for d in deliveries.filter(notification=history.single)}
    # statuses, providers and error codes are kept: the client's statistics stay true
    assert (by_channel["sms"].status, by_channel["sms"].error_code) == ("failed", "21211")
    assert by_channel["email"].provider_message_id == "SG-ada-1"
    assert not Recipient.objects.filter(client=history.client, external_id="ada").exists()
    assert not Device.objects.filter(token=ADA["token"]).exists()
    assert not ConsentRecord.objects.filter(client=history.client).exclude(recipient=history.bob).exists()
    assert not PreferenceProfile.objects.filter(recipient_id=history.ada.id).exists()
    # an event keeps NotifyHub's own codes, not a provider's details
    click = DeliveryEvent.objects.get(provider_event_id="ev-click-1")
    assert click.detail == {} and click.error_message == ""
    claimed = DeliveryEvent.objects.filter(delivery=by_channel["sms"], event="claimed").get()
    assert claimed.detail == {"attempt": 1}


def test_notifications_to_her_alone_lose_variables_and_metadata_shared_ones_keep_them(
    history: History,
) -> None:
    erase(history)
    single = Notification.objects.get(id=history.single.id)
    assert (single.variables, single.metadata) == ({}, {})
    shared = Notification.objects.get(id=history.shared.id)
    assert (shared.variables, shared.metadata) == ({"name": "team"}, {"campaign": "launch"})


def test_what_was_not_sent_is_cancelled_with_reason_erased(history: History) -> None:
    erase(history)
    delivery = Delivery.objects.get(notification=history.scheduled)
    assert (delivery.status, delivery.error_code) == ("cancelled", "erased")
    assert delivery.completed_at is not None and delivery.lease_until is None
    last = delivery.events.order_by("id").last()
    assert last is not None and (last.event, last.detail) == ("cancelled", {"reason": "erased"})
    assert Notification.objects.get(id=history.scheduled.id).status == "cancelled"
    assert deliveries_claim(delivery_ids=[str(delivery.id)]) == {}


def test_suppressions_stay_without_the_address(history: History) -> None:
    before = Suppression.objects.filter(client=history.client).count()
    erase(history)
    rows = list(Suppression.objects.filter(client=history.client))
    # her phone (21211), her email (bounce), her WhatsApp STOP and her "news" unsubscribe
    assert len(rows) == before == 4
    assert {(s.channel, s.reason) for s in rows} == {
        ("sms", "21211"), ("email", "bounce"), ("whatsapp", "stop_keyword"),
        ("email", "unsubscribed")}
    assert all(s.address == "" and s.detail == "" for s in rows)
    # Only the keyed hash stays: the erased address is still blocked.
    assert all(len(s.address_hash) == 64 for s in rows)
    with connection.cursor() as cursor:
        cursor.execute("SELECT address FROM notifications_suppression WHERE client_id = %s",
                       [history.client.pk])
        assert {row[0] for row in cursor.fetchall()} == {""}


def test_webhook_payloads_carry_the_tombstone_and_no_provider_text_or_metadata(
    history: History,
) -> None:
    body = erase(history)
    messages = WebhookMessage.objects.filter(
        delivery_id__in=Delivery.objects.filter(recipient__external_id=body["recipient"]).values("id"))
    assert messages.count() >= 4
    for message in messages:
        data = message.payload["data"]
        assert data["recipient"] == body["recipient"]
        assert data.get("error_message", "") == "" and data.get("metadata", {}) == {}
        assert "url" not in data and "useragent" not in data


def test_audit_rows_keep_a_tombstone_and_an_erase_row_without_her_data(history: History) -> None:
    about = list(AuditLog.objects.filter(client_id=history.client.id, recipient_external_id="ada")
                 .values_list("id", flat=True))
    assert len(about) >= 4  # her single sends and her preference changes

    body = erase(history)

    rows = AuditLog.objects.filter(id__in=about)
    assert set(rows.values_list("recipient_external_id", flat=True)) == {body["recipient"]}
    assert not AuditLog.objects.filter(client_id=history.client.id, recipient_external_id="ada").exists()
    # the shared send lists her under the tombstone, bob as he was
    shared = AuditLog.objects.get(notification_id=history.shared.id, action="notification.send")
    assert shared.changes["recipients"] == [body["recipient"], "bob"]
    # her STOP text and her unsubscribe click: no masked number, IP or user agent left
    inbound = rows.filter(actor_type="inbound")
    assert inbound.count() == 2
    for row in inbound:
        assert row.actor_display.endswith(":[erased]") and row.ip is None and row.user_agent == ""
    erase_row = AuditLog.objects.get(action="recipient.erase")
    assert erase_row.recipient_external_id == body["recipient"]
    assert erase_row.actor_type == "api_key"
    assert erase_row.changes == {"tombstone": body["recipient"], "counts": body["counts"]}


def test_audit_rows_are_append_only_again_after_the_erasure(history: History) -> None:
    erase(history)
    row = AuditLog.objects.first()
    assert row is not None
    with pytest.raises(Exception, match="append-only"), connection.cursor() as cursor:
        cursor.execute("SAVEPOINT t")
        try:
            cursor.execute("UPDATE audit_auditlog SET action = 'x' WHERE id = %s", [row.id])
        finally:
            cursor.execute("ROLLBACK TO SAVEPOINT t")


def test_stored_idempotent_responses_replay_with_the_tombstone(history: History) -> None:
    body = erase(history)
    replay = history.api.post("/api/v1/notifications", {
        "recipients": ["ada"], "template_id": "alert",
        "variables": {"name": ADA["first_name"], "code": "1234"},
        "metadata": {"contact": ADA["email"]}}, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    assert replay.status_code == 202 and replay.headers["Idempotent-Replayed"] == "true"
    assert {d["recipient"] for d in replay.json()["deliveries"]} == {body["recipient"]}


def test_cached_preferences_and_frequency_counters_are_dropped(history: History) -> None:
    counters = redis.Redis.from_url(settings.RESILIENCE_REDIS_URL)
    key = cap_key(recipient_id=str(history.ada.id), category="news", period="day", window="20250101")
    counters.sadd(key, "some-delivery")
    assert cache.get(cache_key(history.ada.id)) is not None

    erase(history)

    assert cache.get(cache_key(history.ada.id)) is None
    assert not counters.exists(key)


def test_erasing_twice_answers_404_and_the_id_can_be_used_again(history: History) -> None:
    erase(history)
    again = history.api.post("/api/v1/recipients/ada/erase")
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "not_found"
    assert history.api.get("/api/v1/recipients/ada").status_code == 404
    created = history.api.put("/api/v1/recipients/ada", {"email": "new.ada@example.org"}, format="json")
    assert created.status_code == 201
    assert Delivery.objects.filter(recipient__external_id="ada").count() == 0


def test_a_tombstone_id_cannot_be_erased_or_exported(history: History) -> None:
    body = erase(history)
    assert history.api.post(f"/api/v1/recipients/{body['recipient']}/erase").status_code == 404
    assert history.api.get(f"/api/v1/recipients/{body['recipient']}/export").status_code == 404


def test_another_clients_recipient_is_404_and_untouched(
    history: History, other_client_api: tuple[Any, Any]
) -> None:
    other, other_api = other_client_api
    assert other_api.post("/api/v1/recipients/bob/erase").status_code == 404
    erase(history)
    assert Recipient.objects.get(client=other, external_id="ada").email == "someone.else@example.net"
    assert Recipient.objects.get(client=history.client, external_id="bob").email == BOB["email"]


def test_a_delivery_with_a_provider_right_now_refuses_the_erasure_and_changes_nothing(
    history: History,
) -> None:
    # A worker has claimed her scheduled delivery (made due) and is calling the provider.
    delivery = Delivery.objects.get(notification=history.scheduled)
    Delivery.objects.filter(id=delivery.id).update(status="queued", due_at=None)
    assert deliveries_claim(delivery_ids=[str(delivery.id)])

    response = history.api.post("/api/v1/recipients/ada/erase")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "recipient_in_flight"
    assert Recipient.objects.get(id=history.ada.id).email == ADA["email"]
    assert not AuditLog.objects.filter(action="recipient.erase").exists()


def test_a_late_provider_receipt_keeps_its_status_but_not_its_text(history: History) -> None:
    erase(history)
    email = Delivery.objects.get(notification=history.single, channel="email")
    assert email.status == "sent"

    delivery_receipts_apply(events=[ProviderEvent(
        provider="sendgrid", event="bounced", occurred_at=timezone.now(),
        status=DeliveryStatus.BOUNCED, provider_message_id="SG-ada-1",
        provider_event_id="ev-late", error_code="bounce", suppress_address=True,
        error_message=f"550 <{ADA['email']}> no such user", detail={"type": "bounce"})])

    email.refresh_from_db()
    assert (email.status, email.error_code, email.error_message) == ("bounced", "bounce", "")
    assert DeliveryEvent.objects.get(provider_event_id="ev-late").error_message == ""
    assert tables_containing(ADA["email"]) == {}


def test_her_failed_deliveries_are_never_re_driven(history: History) -> None:
    erase(history)
    sms = Delivery.objects.get(notification=history.single, channel="sms")
    assert sms.status == "failed"
    assert deliveries_redrive(deliveries=failed_deliveries(delivery_ids=[sms.id]), actor="test") == 0
    assert Delivery.objects.get(id=sms.id).status == "failed"


def test_admin_erase_asks_for_confirmation_then_erases(history: History, admin_client: Any) -> None:
    url = "/admin/recipients/recipient/"
    form = {"action": "gdpr_erase", "_selected_action": [history.ada.pk]}
    staff_edit = LogEntry.objects.create(  # an earlier edit in the admin names her
        user=User.objects.get(username="admin"), action_flag=CHANGE, change_message="[]",
        content_type=ContentType.objects.get_for_model(Recipient), object_id=str(history.ada.pk),
        object_repr=str(history.ada))

    page = admin_client.post(url, form)
    assert page.status_code == 200
    assert "cannot be undone" in page.content.decode()
    assert Recipient.objects.filter(id=history.ada.id).exists()

    done = admin_client.post(url, {**form, "confirm": "yes"})
    assert done.status_code == 302
    assert not Recipient.objects.filter(id=history.ada.id).exists()
    row = AuditLog.objects.get(action="recipient.erase")
    assert (row.actor_type, row.actor_display) == ("user", "admin")
    staff_edit.refresh_from_db()
    assert staff_edit.object_repr == row.recipient_external_id


def test_management_command_erases(history: History) -> None:
    out = io.StringIO()
    call_command("gdpr_erase", "--client", history.client.slug, "ada", "--no-input", stdout=out)
    assert "erased-" in out.getvalue()
    assert tables_containing(ADA["email"]) == {}
    row = AuditLog.objects.get(action="recipient.erase")
    assert (row.actor_type, row.actor_display) == ("system", "manage.py gdpr_erase")
