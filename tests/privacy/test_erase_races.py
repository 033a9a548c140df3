"""Erasure racing a send: a send that read the person before the erasure cannot write their
address back after it (it fails on the recipient's foreign key instead)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction

from apps.notifications.models import Delivery
from apps.notifications.services import notification_send
from apps.privacy.services import recipient_erase
from apps.recipients.models import Recipient
from tests.factories import RecipientFactory, TemplateFactory

from .support import tables_containing

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_send_that_read_her_before_the_erasure_fails_instead_of_writing_her_address(
    client_tenant: Any,
) -> None:
    TemplateFactory(client=client_tenant, key="welcome")
    ada = RecipientFactory(client=client_tenant, external_id="ada", email="ada.race.z9@example.org")
    notification = notification_send(client=client_tenant, recipients=["ada"], template_id="welcome",
                                     variables={"name": "x"}).notification
    written, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def concurrent_send() -> None:
        # A send that loaded `ada` before the erasure: its delivery row is written, and its
        # transaction commits only after the erasure has.
        try:
            with transaction.atomic():
                Delivery.objects.create(notification=notification, client=client_tenant,
                                        recipient_id=ada.id, channel="email", priority="normal",
                                        address=ada.email)
                written.set()
                release.wait(10)
        except IntegrityError as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=concurrent_send)
    thread.start()
    assert written.wait(10)

    result = recipient_erase(recipient=Recipient.objects.get(id=ada.id))
    release.set()
    thread.join(10)

    assert isinstance(outcome.get("error"), IntegrityError)
    assert tables_containing("ada.race.z9@example.org") == {}
    assert Delivery.objects.filter(recipient__external_id=result.tombstone).count() == 1
