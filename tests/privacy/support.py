"""Helpers for the GDPR tests: a recipient with a full history, and a scan of every table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps as django_apps
from django.db import connection
from django.test import Client as DjangoClient
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core.encrypted_fields import EncryptedMixin
from apps.notifications.dispatch import deliveries_claim, delivery_record_outcome
from apps.notifications.models import Delivery, DeliveryStatus, Notification
from apps.notifications.providers.base import SendResult
from apps.notifications.receipts import ProviderEvent, delivery_receipts_apply
from apps.notifications.suppressions import SuppressionItem, suppressions_add
from apps.preferences.selectors import preferences_for
from apps.preferences.services import ChangeContext, inbound_keyword_apply
from apps.preferences.unsubscribe import unsubscribe_url
from apps.recipients.models import Recipient
from apps.webhooks.outbound.services import webhook_endpoint_create
from tests.factories import TemplateFactory

# Distinctive values, so a scan of the whole database finds them and nothing else.
ADA = {
    "email": "ada.lovelace.k7@example.org",
    "phone": "+14155550142",
    "whatsapp": "+14155550199",
    "token": "fcm-token-ada-4f9c2e7b1d83",
    "first_name": "Augustaxq",
}
BOB = {"email": "bob.babbage.m2@example.org", "phone": "+14155550177"}


def pii_values(person: dict[str, str] = ADA) -> list[str]:
    return list(person.values())


def tables_containing(value: str) -> dict[str, int]:
    """table → rows holding `value` (any case), over EVERY table of the database (a table added
    later is scanned too): in the row's JSON text, or, for encrypted columns (whose stored text
    is a Fernet token), in their decrypted value."""
    pattern = "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    found: dict[str, int] = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(
                f'SELECT count(*) FROM "{table}" AS t WHERE row_to_json(t)::text ILIKE %s',
                [pattern])
            count = cursor.fetchone()[0]
            if count:
                found[table] = count
    needle = value.lower()
    for model in django_apps.get_models():
        encrypted = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedMixin)]
        if not encrypted:
            continue
        count = sum(1 for row in model._default_manager.values_list(*encrypted).iterator()
                    if any(v and needle in v.lower() for v in row))
        if count:
            table = model._meta.db_table
            found[table] = max(found.get(table, 0), count)
    return found


def export_of(response: Any) -> dict[str, Any]:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return json.loads(body)


@dataclass
class History:
    client: Any
    api: APIClient
    ada: Recipient
    bob: Recipient
    single: Notification  # to ada alone, every channel
    shared: Notification  # to ada and bob
    scheduled: Notification  # to ada, tomorrow
    deliveries: dict[str, Delivery] = field(default_factory=dict)  # single's, by channel


def _claim_and_record(delivery: Delivery, result: SendResult) -> None:
    attempt = deliveries_claim(delivery_ids=[str(delivery.id)])[str(delivery.id)]
    delivery_record_outcome(delivery_id=str(delivery.id), attempt=attempt, result=result)


def build_history(client: Any, api: APIClient) -> History:
    """Ada's history at one client, through the services and the API (no worker): the
    provider outcomes and receipts are recorded as the worker and the callbacks record them,
    with provider texts that echo her address, as real providers' do."""
    TemplateFactory(client=client, key="welcome")
    TemplateFactory(client=client, key="alert", channels=["email", "sms", "whatsapp", "push"],
                    version__sms_body="Code {{ code }}", version__whatsapp_body="Code {{ code }}",
                    version__push_title="Code {{ code }}")
    webhook_endpoint_create(client=client, url="http://127.0.0.1:9/hooks")
    assert api.put("/api/v1/recipients/ada", {
        "email": ADA["email"], "phone": ADA["phone"], "whatsapp": ADA["whatsapp"],
        "attributes": {"first_name": ADA["first_name"], "plan": "pro"}}, format="json").status_code == 201
    assert api.post("/api/v1/recipients/ada/devices", {"token": ADA["token"], "platform": "android"},
                    format="json").status_code == 201
    assert api.put("/api/v1/recipients/bob", {"email": BOB["email"], "phone": BOB["phone"]},
                   format="json").status_code == 201

    single = api.post("/api/v1/notifications", {
        "recipients": ["ada"], "template_id": "alert",
        "variables": {"name": ADA["first_name"], "code": "1234"},
        "metadata": {"contact": ADA["email"]}}, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    assert single.status_code == 202, single.content
    shared = api.post("/api/v1/notifications", {
        "recipients": ["ada", "bob"], "template_id": "welcome", "variables": {"name": "team"},
        "metadata": {"campaign": "launch"}}, format="json")
    assert shared.status_code == 202, shared.content
    scheduled = api.post("/api/v1/notifications", {
        "recipients": ["ada"], "template_id": "welcome", "variables": {"name": "later"},
        "scheduled_at": (timezone.now() + timedelta(days=1)).isoformat()}, format="json")
    assert scheduled.status_code == 202, scheduled.content

    history = History(
        client=client, api=api, ada=Recipient.objects.get(client=client, external_id="ada"),
        bob=Recipient.objects.get(client=client, external_id="bob"),
        single=Notification.objects.get(id=single.json()["id"]),
        shared=Notification.objects.get(id=shared.json()["id"]),
        scheduled=Notification.objects.get(id=scheduled.json()["id"]))
    history.deliveries = {d.channel: d for d in history.single.deliveries.all()}
    by = history.deliveries

    # Email: sent, then clicked (the URL carries her address); stays `sent` for late receipts.
    _claim_and_record(by["email"], SendResult.sent("sendgrid", "SG-ada-1"))
    # SMS: the provider refuses the number and says which (Twilio 21211).
    _claim_and_record(by["sms"], SendResult.permanent(
        "twilio_sms", "21211", f"Invalid 'To' Phone Number: {ADA['phone']}", suppress=True))
    suppressions_add(items=[SuppressionItem(
        client_id=client.id, channel="sms", address=ADA["phone"], reason="21211",
        detail=f"Invalid 'To' Phone Number: {ADA['phone']}", delivery_id=by["sms"].id)])
    _claim_and_record(by["whatsapp"], SendResult.sent("twilio_whatsapp", "WA-ada-1"))
    _claim_and_record(by["push"], SendResult.sent("fcm", "projects/x/messages/1"))
    now = timezone.now()
    delivery_receipts_apply(events=[
        ProviderEvent(provider="sendgrid", event="clicked", occurred_at=now,
                      delivery_id=str(by["email"].id), provider_event_id="ev-click-1",
                      detail={"url": f"https://shop.example/?u={ADA['email']}",
                              "useragent": "Mozilla/5.0"}),
        ProviderEvent(provider="twilio_whatsapp", event="delivered", occurred_at=now,
                      status=DeliveryStatus.DELIVERED, delivery_id=str(by["whatsapp"].id),
                      provider_event_id="ev-wa-1"),
    ])
    # The shared notification: ada's email bounces, and the bounce names her address.
    ada_shared = history.shared.deliveries.get(recipient=history.ada)
    _claim_and_record(ada_shared, SendResult.sent("sendgrid", "SG-ada-2"))
    delivery_receipts_apply(events=[ProviderEvent(
        provider="sendgrid", event="bounced", occurred_at=now, status=DeliveryStatus.BOUNCED,
        delivery_id=str(ada_shared.id), provider_event_id="ev-bounce-1", error_code="bounce",
        error_message=f"550 5.1.1 <{ADA['email']}>: Recipient address rejected",
        suppress_address=True, detail={"type": "bounce"})])

    # Preferences: the client opts her out of marketing; she texts STOP on WhatsApp; she
    # clicks an unsubscribe link (her address is the consent record's actor).
    assert api.post("/api/v1/preferences/ada/opt-out", {"category": "marketing"},
                    format="json").status_code == 200
    inbound_keyword_apply(from_=f"whatsapp:{ADA['whatsapp']}", body="STOP",
                          context=ChangeContext(source="whatsapp_keyword", ip="203.0.113.9",
                                                user_agent="TwilioProxy/1.1"))
    link = unsubscribe_url(recipient=history.ada, category="news")
    assert DjangoClient().post(urlsplit(link).path, REMOTE_ADDR="198.51.100.7",
                               HTTP_USER_AGENT="AdaMail/2.0").status_code == 200
    preferences_for(recipient_ids=[history.ada.id])  # cached in Redis, as a worker leaves it
    return history
