from __future__ import annotations

from typing import Any

import pytest
import redis
from django.conf import settings


@pytest.fixture(autouse=True)
def _empty_broker() -> None:
    """Each end-to-end test starts with no queued tasks and closed, full provider gates."""
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


@pytest.fixture(scope="module")
def browser() -> Any:
    """Headless Debian Chromium through Playwright (tests/support/browser.py)."""
    from tests.support.browser import launched_browser

    yield from launched_browser()


@pytest.fixture
def page(browser: Any) -> Any:
    """A fresh browser context (no cookies, no storage) and its page."""
    context = browser.new_context(viewport={"width": 1024, "height": 720}, locale="en-US")
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
