"""Fixtures for outbound client webhooks: a local receiver (stdlib HTTP server on 127.0.0.1),
endpoints, sent deliveries, and a recorder in place of the broker for the non-e2e tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache

from apps.webhooks.models import WebhookEndpoint
from apps.webhooks.outbound import outbox
from tests.sandbox.receiver import HttpReceiver

from .support import Published, make_endpoint


@pytest.fixture
def subscriptions_cached(settings: Any) -> Iterator[None]:
    """The subscriptions cache as in production (tests run without it: it lives in a Redis
    shared with other test sessions, while the rows they write are never committed)."""
    settings.WEBHOOKS_SUBSCRIPTIONS_CACHE_SECONDS = 300
    cache.delete(outbox._GENERATION_KEY)
    yield
    cache.delete(outbox._GENERATION_KEY)


@pytest.fixture(autouse=True)
def published(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Published:
    """Outside e2e tests nothing reaches the broker: publishing is recorded here instead."""
    calls = Published()
    if request.node.get_closest_marker("e2e") is None:
        from apps.webhooks.outbound.tasks import (
            webhook_endpoint_drain_task,
            webhook_endpoint_probe_task,
            webhook_messages_deliver_task,
        )

        def record(*, args: list[Any], countdown: float | None = None, **kwargs: Any) -> None:
            assert kwargs["queue"] == "webhooks"
            calls.append((list(args[0]), countdown))

        def record_probe(*, args: list[Any], countdown: float | None = None, **kwargs: Any) -> None:
            assert kwargs["queue"] == "webhooks"
            calls.probes.append((str(args[0]), countdown))

        def record_drain(*, args: list[Any], countdown: float | None = None, **kwargs: Any) -> None:
            assert kwargs["queue"] == "webhooks"
            calls.drains.append(str(args[0]))

        monkeypatch.setattr(webhook_messages_deliver_task, "apply_async", record)
        monkeypatch.setattr(webhook_endpoint_probe_task, "apply_async", record_probe)
        monkeypatch.setattr(webhook_endpoint_drain_task, "apply_async", record_drain)
    return calls


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver()
    yield server
    server.close()


@pytest.fixture
def guard_on(settings: Any) -> Any:
    """Production's network guard: no private addresses, no allow-list."""
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOKS_ALLOWED_NETWORKS = []
    return settings


@pytest.fixture
def endpoint(client_tenant: Any, receiver: HttpReceiver) -> WebhookEndpoint:
    """An endpoint of `client_tenant` for every event, at the local receiver."""
    return make_endpoint(client_tenant, receiver.url("/hooks"))
