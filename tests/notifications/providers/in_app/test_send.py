"""The in_app provider: a batched provider whose "send" stores the messages (apps/inbox); the
full send path is tested in tests/inbox/test_send.py."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from apps.inbox.models import InboxMessage
from apps.notifications.models import Delivery
from apps.notifications.providers.base import OutboundMessage, Outcome
from apps.notifications.providers.registry import get_provider, providers_for
from apps.notifications.services import notification_send
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db


def test_in_app_is_offered_in_both_modes_without_settings() -> None:
    for mode in ("live", "test"):
        [provider] = providers_for("in_app", mode=mode)
        assert (provider.name, provider.channel, provider.batched) == ("in_app", "in_app", True)


def _messages(client: Any, n: int) -> list[OutboundMessage]:
    TemplateFactory(client=client, key="t", channels=["in_app"])
    outcome = notification_send(client=client, template_id="t", channels=["in_app"],
                                variables={"name": "A"},
                                recipients=[{"id": f"u{i}"} for i in range(n)])
    return [OutboundMessage(delivery_id=str(d.id), notification_id=str(d.notification_id),
                            client_id=str(client.id), channel="in_app", to=d.address,
                            subject="Title", text="Body", recipient_id=str(d.recipient_id),
                            action_url="/x", data={"k": 1})
            for d in Delivery.objects.filter(notification=outcome.notification)]


def test_send_many_stores_every_message_and_answers_delivered_in_order(client_tenant: Any) -> None:
    messages = _messages(client_tenant, 3)

    results = get_provider("in_app").send_many(messages)

    stored = dict(InboxMessage.objects.values_list("delivery_id", "id"))
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 3
    assert [r.provider_message_id for r in results] == [
        str(stored[uuid.UUID(m.delivery_id)]) for m in messages]
    assert set(InboxMessage.objects.values_list("title", "body", "action_url")) == {
        ("Title", "Body", "/x")}


def test_a_single_send_goes_through_the_same_store(client_tenant: Any) -> None:
    [message] = _messages(client_tenant, 1)
    result = get_provider("in_app").send(message)
    assert result.outcome == Outcome.DELIVERED
    assert InboxMessage.objects.get().delivery_id.hex == message.delivery_id.replace("-", "")
