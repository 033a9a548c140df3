"""A real stream process (python -m apps.stream) on this test session's database and Redis,
and inbox messages stored through the inbox's own service (which publishes them)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction

from tests.factories import ClientFactory, RecipientFactory, TemplateFactory
from tests.support.processes import database_url
from tests.support.stream import StreamProcess

ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def stream_env(django_db_setup: None, django_db_blocker: Any,
               tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from django.db import connection

    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "notifyhub.settings.test",
        "DATABASE_URL": database_url(connection.settings_dict),
        "TEST_REDIS_URL": settings.CELERY_BROKER_URL,
        "INBOX_REDIS_URL": settings.INBOX_REDIS_URL,
        "INBOX_STREAM_HEARTBEAT_SECONDS": "0.5",
        "INBOX_CORS_CACHE_SECONDS": "0",
        "INBOX_STREAM_MAX_BUFFER_BYTES": "65536",
        "PYTHONUNBUFFERED": "1",
        # The stream processes' metrics, as every process of a host writes them (read with
        # stream_metrics below).
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("prometheus")),
    }


def stream_metrics(env: dict[str, str]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples the web's /metrics would show for the stream processes of `env`:
    {(sample name, sorted labels): value}."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=env["PROMETHEUS_MULTIPROC_DIR"])  # type: ignore[no-untyped-call]
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in registry.collect() for sample in family.samples
            if sample.name.startswith("notifyhub_stream_")}


@pytest.fixture(scope="module")
def stream(stream_env: dict[str, str]) -> Iterator[StreamProcess]:
    process = StreamProcess(stream_env).start()
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@pytest.fixture
def inbox(transactional_db: None) -> Any:
    """A client that allows ORIGIN, one of its recipients and what to send them."""
    return Inbox()


class Inbox:
    def __init__(self, client: Any = None) -> None:
        self.client = client or ClientFactory(inbox_allowed_origins=[ORIGIN])
        self.recipient = RecipientFactory(client=self.client)
        self.template = TemplateFactory(client=self.client)
        self.version = self.template.versions.first()

    def token(self, ttl: timedelta | None = None, recipient: Any = None) -> str:
        from apps.inbox.tokens import mint_inbox_token

        return mint_inbox_token(self.client, recipient or self.recipient, ttl).token

    def store(self, count: int = 1, *, recipient: Any = None, body: str = "") -> list[str]:
        """`count` messages for the recipient through inbox_messages_store (committed, then
        published as a dispatch would); returns their titles."""
        from apps.inbox.services import inbox_messages_store
        from apps.notifications.models import Delivery, Notification

        recipient = recipient or self.recipient
        with transaction.atomic():
            notification = Notification.objects.create(
                client=self.client, template_version=self.version, channels=["in_app"])
            titles, items = [], []
            for _ in range(count):
                delivery = Delivery.objects.create(
                    notification=notification, client=self.client, recipient=recipient,
                    channel="in_app", priority="normal", status="delivered")
                title = f"message {delivery.id}"
                titles.append(title)
                items.append({"delivery_id": str(delivery.id), "client_id": str(self.client.pk),
                              "recipient_id": str(recipient.pk), "category": "transactional",
                              "title": title, "body": body, "action_url": "", "data": {}})
            inbox_messages_store(items=items)
        return titles
