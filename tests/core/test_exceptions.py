"""The API's error handler: what a client can cause is a 4xx in the error format, never a 500."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction

from apps.core.exceptions import api_exception_handler
from apps.notifications.models import Delivery


@pytest.mark.django_db
def test_a_row_deleted_while_the_request_ran_is_a_409_conflict_not_a_500(client_tenant: Any) -> None:
    # What a send racing an erasure meets at commit: its delivery points at a recipient that
    # is gone (PostgreSQL checks the foreign key when the transaction commits).
    with pytest.raises(IntegrityError) as raised, transaction.atomic():
        with connection.cursor() as cursor:  # check now, as the commit would
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        Delivery.objects.create(notification_id=uuid.uuid4(), client=client_tenant,
                                recipient_id=uuid.uuid4(), channel="email", priority="normal",
                                address="gone@example.com")

    response = api_exception_handler(raised.value, {})

    assert response is not None and response.status_code == 409
    assert response.data["error"]["code"] == "conflict"
    assert "nothing was saved" in response.data["error"]["message"]


def test_other_integrity_errors_are_left_to_the_server_error_handler() -> None:
    # A unique violation that reaches the handler is a bug in the code, not the client's doing.
    assert api_exception_handler(IntegrityError("duplicate key"), {}) is None
