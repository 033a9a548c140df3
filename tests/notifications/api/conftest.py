"""Fixtures for the client-platform API tests: a second tenant and an empty broker."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from tests.factories import ClientFactory, TemplateFactory, api_key_for

from .helpers import api_with_key


@pytest.fixture(autouse=True)
def _empty_broker() -> None:
    """Queues, throttle and quota counters start empty (all live in the tests' Redis DB)."""
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


@pytest.fixture
def other_tenant(db: None) -> Any:
    other = ClientFactory()
    TemplateFactory(client=other, key="welcome")
    return other


@pytest.fixture
def other_api(other_tenant: Any) -> APIClient:
    """An API client authenticated as `other_tenant`."""
    return api_with_key(api_key_for(other_tenant))
