from __future__ import annotations

import pytest
import redis
from django.conf import settings


@pytest.fixture(autouse=True)
def _empty_broker() -> None:
    """Each end-to-end test starts with no queued tasks and closed, full provider gates."""
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
