"""GDPR: a recipient's inbox is in their export, and goes with their erasure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apps.inbox.models import InboxCounter, InboxMessage
from apps.inbox.tokens import InvalidInboxToken, mint_inbox_token, read_inbox_token

from .conftest import SendInApp, token_api

pytestmark = pytest.mark.django_db


def test_the_export_holds_the_inbox_and_erasure_deletes_it(
        api: Any, client_tenant: Any, ada: Any, send_in_app: SendInApp) -> None:
    send_in_app("ada")
    send_in_app("ada", name="Second")
    message = InboxMessage.objects.order_by("seq").first()
    assert message is not None
    token_api(client_tenant, ada).post(f"/api/v1/inbox/messages/{message.id}/read")
    token = mint_inbox_token(client_tenant, ada).token

    response = api.get("/api/v1/recipients/ada/export")
    document = json.loads(b"".join(response.streaming_content))
    erased = api.post("/api/v1/recipients/ada/erase")

    inbox = document["inbox_messages"]
    assert [m["title"] for m in inbox] == ["Welcome, Second", "Welcome, Ada"]
    assert inbox[1]["read_at"] is not None
    assert erased.status_code == 200, erased.json()
    assert erased.json()["counts"]["inbox_messages_deleted"] == 2
    assert not InboxMessage.objects.exists() and not InboxCounter.objects.exists()
    with pytest.raises(InvalidInboxToken):
        read_inbox_token(token)  # the recipient is gone: their token opens nothing
