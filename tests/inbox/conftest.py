"""Inbox fixtures: a tenant with an in-app template, a recipient, and helpers to send in-app
messages through the real accept → dispatch path and to listen to the live channel."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from apps.inbox.live import CHANNEL_PATTERN
from apps.inbox.tokens import mint_inbox_token
from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Notification
from apps.notifications.services import notification_send
from apps.recipients.models import Recipient
from tests.factories import RecipientFactory, TemplateFactory


@pytest.fixture
def in_app_template(client_tenant: Any) -> Any:
    return TemplateFactory(
        client=client_tenant, key="welcome", channels=["email", "in_app"],
        version__in_app_title="Welcome, {{ name }}",
        version__in_app_body="Hi {{ name }}, you are {{ recipient.id }}.",
        version__in_app_action_url="https://app.example.com/start?u={{ recipient.id }}",
        version__in_app_data={"order": "{{ orderId }}", "count": 3})


@pytest.fixture
def ada(client_tenant: Any) -> Recipient:
    return RecipientFactory(client=client_tenant, external_id="ada")


SendInApp = Callable[..., Notification]


@pytest.fixture
def send_in_app(client_tenant: Any, in_app_template: Any) -> SendInApp:
    """Accepts an in-app send and runs its dispatch (one chunk) in this process."""

    def send(*recipients: str, category: str = "updates", client: Any = None,
             template: str = "welcome", **variables: Any) -> Notification:
        outcome = notification_send(
            client=client or client_tenant, template_id=template, channels=["in_app"],
            category=category, variables={"name": "Ada", "orderId": "ORD-1", **variables},
            recipients=list(recipients) or ["ada"])
        ids = [str(i) for i in outcome.notification.deliveries.values_list("id", flat=True)]
        deliveries_dispatch(delivery_ids=ids)
        return outcome.notification

    return send


def token_api(client: Any, recipient: Recipient) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {mint_inbox_token(client, recipient).token}")
    return api


class Listener:
    """A pattern subscription to every inbox channel, as the stream process has."""

    def __init__(self) -> None:
        self.redis = redis.Redis.from_url(settings.INBOX_REDIS_URL)
        self.pubsub = self.redis.pubsub()
        self.pubsub.psubscribe(CHANNEL_PATTERN)
        self.pubsub.get_message(timeout=1.0)  # the subscription's confirmation

    def events(self, wait: float = 1.0) -> list[tuple[str, dict[str, Any]]]:
        out = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.1)
            if message and message["type"] == "pmessage":
                out.append((message["channel"].decode(), json.loads(message["data"])))
                deadline = time.monotonic() + 0.2  # a little more, then stop
        return out

    def close(self) -> None:
        self.pubsub.close()
        self.redis.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    live = Listener()
    yield live
    live.close()
