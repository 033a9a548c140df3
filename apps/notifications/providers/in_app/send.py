"""Channel `in_app`: the message is stored in the recipient's inbox (apps/inbox), and that is
its delivery: `delivered` once stored, no receipt follows.

A batched provider (`Provider.batched`): dispatch hands it the chunk's messages in one call,
inside the transaction that records their outcomes, so a chunk of 100 is one INSERT of inbox
messages (and one upsert of the recipients' counters), and the messages and the deliveries'
`delivered` commit together. The live events are published after that commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from apps.inbox.services import inbox_messages_store

from ..base import OutboundMessage, Provider, SendResult


class InAppProvider(Provider):
    name = "in_app"
    channel = "in_app"
    batched = True

    def build_payload(self, message: OutboundMessage) -> dict[str, Any]:
        return {"delivery_id": message.delivery_id, "client_id": message.client_id,
                "recipient_id": message.recipient_id, "category": message.category,
                "title": message.subject, "body": message.text,
                "action_url": message.action_url, "data": message.data or {}}

    def call(self, payload: dict[str, Any], message: OutboundMessage) -> SendResult:
        return self.send_many([message])[0]

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        stored = inbox_messages_store(items=[self.build_payload(m) for m in messages])
        return [SendResult.delivered(self.name, stored[m.delivery_id])
                if m.delivery_id in stored else
                SendResult.permanent(self.name, "invalid_message", "Not stored.")
                for m in messages]
