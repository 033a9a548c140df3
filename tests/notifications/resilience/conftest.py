"""Fixtures for the resilience primitives: a real Redis, a unique key prefix per test whose
keys are deleted afterwards, and an unreachable fail-fast client. No Django database is needed.

These tests use Redis DB 12, which nothing else flushes (the rest of the suite flushes DB 15
at start), so a suite running at the same time cannot reset a breaker mid-test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

DEFAULT_REDIS_URL = "redis://127.0.0.1:63799/12"


def test_redis_url() -> str:
    """``$REDIS_URL`` with its database switched to 12."""
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    return urlunsplit(urlsplit(url)._replace(path="/12"))


test_redis_url.__test__ = False  # type: ignore[attr-defined]  # not a test despite its name


@pytest.fixture(scope="session")
def redis_url() -> str:
    return test_redis_url()


@pytest.fixture(scope="session")
def _redis_session(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"no Redis at {redis_url} ({exc}); start it with `bash scripts/services.sh up`")
    yield client
    client.close()


@pytest.fixture
def prefix(_redis_session: redis.Redis) -> Iterator[str]:
    """A key prefix unique to this test; every key under it is deleted afterwards."""
    value = f"test:resilience:{uuid.uuid4().hex[:12]}"
    yield value
    keys = list(_redis_session.scan_iter(match=f"{value}:*", count=1000))
    if keys:
        _redis_session.delete(*keys)


@pytest.fixture
def r(_redis_session: redis.Redis) -> redis.Redis:
    """The shared real-Redis client (DB 12)."""
    return _redis_session


@pytest.fixture
def unreachable() -> Iterator[redis.Redis]:
    """A client for a port nobody listens on, configured to fail fast (no retries)."""
    client = redis.Redis(port=1, retry=Retry(NoBackoff(), 0), socket_connect_timeout=0.5)
    yield client
    client.close()
