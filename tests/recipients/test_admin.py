"""Recipients in the admin: every save and delete is in the audit log with the names of the
contact fields that changed, never their values."""

from __future__ import annotations

from typing import Any

import pytest

from apps.audit.models import AuditLog
from tests.factories import RecipientFactory

pytestmark = pytest.mark.django_db


def form(recipient: Any, **changes: Any) -> dict[str, Any]:
    data = {"client": str(recipient.client_id), "external_id": recipient.external_id,
            "email": recipient.email, "phone": recipient.phone, "whatsapp": recipient.whatsapp,
            "locale": recipient.locale, "timezone": recipient.timezone, "attributes": "{}",
            "devices-TOTAL_FORMS": "0", "devices-INITIAL_FORMS": "0"}
    return {**data, **changes}


def test_admin_edits_of_a_recipient_are_audited_without_personal_data(
        admin_client: Any, client_tenant: Any) -> None:
    recipient = RecipientFactory(client=client_tenant, external_id="ada", email="ada@example.com")
    url = f"/admin/recipients/recipient/{recipient.pk}/change/"

    response = admin_client.post(url, form(recipient, email="lovelace@example.com", locale="fr",
                                           attributes='{"plan": "vip"}'))
    assert response.status_code == 302, response.context["errors"] if response.context else response
    admin_client.post(url, form(recipient, email="lovelace@example.com", locale="fr",
                                attributes='{"plan": "vip"}'))  # nothing changed
    admin_client.post(f"/admin/recipients/recipient/{recipient.pk}/delete/", {"post": "yes"})

    updated, deleted = AuditLog.objects.filter(object_id=str(recipient.pk)).order_by("id")
    assert (updated.action, updated.recipient_external_id) == ("recipient.update", "ada")
    assert updated.changes == {"name": "ada", "fields": ["attributes", "email"],
                               "before": {"locale": "en"}, "after": {"locale": "fr"}}
    assert (deleted.action, deleted.changes) == ("recipient.delete", {"name": "ada"})
    assert "example.com" not in str(updated.changes) and "vip" not in str(updated.changes)
