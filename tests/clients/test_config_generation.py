"""A client's configuration generation (apps/clients/config_generation.py): the throttle
reads it in the call that counts the request, a write replaces it at once and after commit,
and the process's copies are served only at their own generation and within their TTL
(tests/core/test_generations.py)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import transaction

from apps.clients.config_generation import client_config_changed, client_generation_key
from apps.clients.limits_store import limits_redis
from apps.clients.throttling import throttle_hit_reading
from tests.factories import ClientFactory


@pytest.fixture(autouse=True)
def _empty_limits() -> None:
    redis.Redis.from_url(settings.API_LIMITS_REDIS_URL).flushdb()


def token(client_id: Any) -> str | None:
    raw = limits_redis().get(client_generation_key(client_id))
    return raw.decode() if raw is not None else None


def read(client_id: Any) -> str | None:
    return throttle_hit_reading(key=f"t:{client_id}", limit=100, period_seconds=60,
                                generation_key=client_generation_key(client_id))[1]


@pytest.mark.django_db
def test_the_throttle_sets_a_missing_generation_and_then_returns_it() -> None:
    client = ClientFactory()
    first = read(client.id)

    assert first is not None and first == token(client.id)
    assert read(client.id) == first
    assert 0 < limits_redis().ttl(client_generation_key(client.id)) <= 7 * 86_400


@pytest.mark.django_db
def test_a_refused_request_reads_no_generation() -> None:
    client = ClientFactory()
    assert throttle_hit_reading(key=f"t:{client.id}", limit=1, period_seconds=60,
                                generation_key=client_generation_key(client.id))[0] == 0
    wait, generation = throttle_hit_reading(key=f"t:{client.id}", limit=1, period_seconds=60,
                                            generation_key=client_generation_key(client.id))
    assert wait > 0 and generation is None


@pytest.mark.django_db(transaction=True)
def test_a_change_replaces_the_generation_at_once_and_after_commit() -> None:
    client = ClientFactory()
    before = read(client.id)
    with transaction.atomic():
        client_config_changed(client_id=client.id)
        inside = token(client.id)
    after = token(client.id)

    assert len({before, inside, after}) == 3
    assert None not in (before, inside, after)


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_only_replaces_it_once() -> None:
    client = ClientFactory()
    read(client.id)
    with pytest.raises(RuntimeError), transaction.atomic():
        client_config_changed(client_id=client.id)
        inside = token(client.id)
        raise RuntimeError
    assert token(client.id) == inside


@pytest.mark.django_db
def test_a_change_while_redis_is_down_does_not_fail_the_write(settings: Any, caplog: Any) -> None:
    settings.API_LIMITS_REDIS_URL = "redis://127.0.0.1:1/0"
    client_config_changed(client_id="c1")
    assert "could not replace the configuration generation" in caplog.text
