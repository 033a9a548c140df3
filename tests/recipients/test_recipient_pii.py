"""Encrypted recipient addresses are still found by address: inbound STOP, the suppression
list at send time, and support's exact search in the admin."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.urls import reverse

from apps.audit.services import audit_snapshot, changed_fields
from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Suppression
from apps.notifications.services import notification_send
from apps.notifications.suppressions import SuppressionItem, suppressions_add
from apps.preferences.models import ConsentRecord
from apps.preferences.services import inbound_keyword_apply
from apps.recipients.models import Recipient
from tests.factories import RecipientFactory, TemplateFactory

pytestmark = pytest.mark.django_db

NUMBER = "+14155550142"


def test_stop_from_a_number_finds_its_encrypted_recipient(api: Any, client_tenant: Any) -> None:
    api.put("/api/v1/recipients/ada", {"phone": NUMBER}, format="json")
    api.put("/api/v1/recipients/bob", {"phone": "+14155550199"}, format="json")
    outcome = inbound_keyword_apply(from_=NUMBER, body="STOP")
    assert (outcome.keyword, outcome.recipients, outcome.changed) == ("opt_out", 1, 1)
    preferences = api.get("/api/v1/preferences/ada").json()
    assert preferences["channels"]["sms"]["enabled"] is False
    assert api.get("/api/v1/preferences/bob").json()["channels"]["sms"]["enabled"] is True


def test_whatsapp_stop_falls_back_to_the_phone_number(client_tenant: Any) -> None:
    RecipientFactory(client=client_tenant, phone=NUMBER, whatsapp="")
    RecipientFactory(client=client_tenant, phone=NUMBER, whatsapp="+14155550100")  # another WA
    outcome = inbound_keyword_apply(from_=f"whatsapp:{NUMBER}", body="STOP")
    assert outcome.recipients == 1


def test_a_suppressed_address_blocks_a_later_send_whatever_its_case(client_tenant: Any) -> None:
    TemplateFactory(client=client_tenant, key="welcome")
    RecipientFactory(client=client_tenant, external_id="ada", email="ada@example.com")
    suppressions_add(items=[SuppressionItem(client_id=client_tenant.id, channel="email",
                                            address="Ada@Example.com", reason="hard_bounce")])
    notification = notification_send(client=client_tenant, recipients=["ada"], template_id="welcome",
                                      variables={"name": "Ada"}).notification
    report = deliveries_dispatch(delivery_ids=[str(d.id) for d in notification.deliveries.all()])
    delivery = notification.deliveries.get()
    assert (report.suppressed, delivery.status, delivery.error_code) == (1, "suppressed", "suppressed")
    assert "hard_bounce" in delivery.error_message


def test_suppressing_an_address_twice_keeps_one_row(client_tenant: Any) -> None:
    for address in ("ada@example.com", "ADA@example.com"):
        suppressions_add(items=[SuppressionItem(client_id=client_tenant.id, channel="email",
                                                address=address, reason="bounced")])
    assert Suppression.objects.count() == 1


def test_admin_finds_a_recipient_and_a_suppression_by_exact_address(
    admin_client: Any, client_tenant: Any
) -> None:
    RecipientFactory(client=client_tenant, external_id="ada", email="ada@example.com", phone=NUMBER)
    RecipientFactory(client=client_tenant, external_id="bob", email="bob@example.com")
    Suppression.objects.create(client=client_tenant, channel="sms", address=NUMBER, reason="landline")
    url = reverse("admin:recipients_recipient_changelist")

    def found(url: str, term: str) -> list[Any]:
        return list(admin_client.get(url, {"q": term}).context["cl"].result_list)

    for term in ("Ada@Example.com", NUMBER, "ada"):
        assert [r.external_id for r in found(url, term)] == ["ada"], term
    assert found(url, "ada@example") == []  # a part of an address finds nothing
    assert len(found(url, "")) == Recipient.objects.count() == 2
    suppressions = found(reverse("admin:notifications_suppression_changelist"), NUMBER)
    assert [s.reason for s in suppressions] == ["landline"]


def test_the_number_that_texted_stop_is_kept_encrypted_as_consent_evidence(
    admin_client: Any, client_tenant: Any
) -> None:
    RecipientFactory(client=client_tenant, external_id="ada", phone=NUMBER)
    inbound_keyword_apply(from_=NUMBER, body="STOP")
    record = ConsentRecord.objects.get(action="opt_out")
    assert record.actor == NUMBER
    with connection.cursor() as cursor:
        cursor.execute("SELECT actor FROM preferences_consentrecord WHERE id = %s", [record.pk])
        assert NUMBER not in cursor.fetchone()[0]
    url = reverse("admin:preferences_consentrecord_changelist")
    # the opt-out and the confirmation's record (same actor)
    found = list(admin_client.get(url, {"q": NUMBER}).context["cl"].result_list)
    assert record in found and {r.action for r in found} == {"opt_out", "confirmed"}
    assert list(admin_client.get(url, {"q": "+14155550000"}).context["cl"].result_list) == []


def test_audit_rows_record_a_changed_address_masked(client_tenant: Any) -> None:
    jane = RecipientFactory(client=client_tenant, email="jane@example.com", locale="en")
    before = audit_snapshot(jane, ["email", "locale"])
    jane.email, jane.locale = "bob@example.org", "fr"
    assert changed_fields(before, jane) == {
        "before": {"email": "j***@example.com", "locale": "en"},
        "after": {"email": "b***@example.org", "locale": "fr"},
    }
    assert audit_snapshot(jane, ["email"], from_db=False) == {"email": "b***@example.org"}
