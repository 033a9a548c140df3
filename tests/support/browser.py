"""A real browser for the browser tests: Playwright's Python package driving Debian's Chromium
(`/usr/bin/chromium`, installed by scripts/browser.sh; `playwright install` is not used).

The tests skip, saying why, only when that executable is missing (scripts/test.sh installs it
when it runs as root). NOTIFYHUB_SCREENSHOTS=1 makes the tests that take the documentation's
screenshots (docs/img/) write them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import REPO_ROOT

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "docs" / "img"


def chromium_or_skip() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"chromium is not installed at {CHROMIUM}: `bash scripts/browser.sh ensure` "
                    "installs Debian's package (as root; scripts/test.sh runs it)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is missing: `make` installs requirements.txt")
    return CHROMIUM


def launched_browser() -> Iterator[Any]:
    """One headless Chromium (for a test module: tests/e2e/conftest.py).

    Playwright's sync API runs an event loop in this thread while it is started, so it is
    stopped when the module ends: a later test's `asyncio.run` would find a running loop.
    Meanwhile Django's async-safety check is off, as the ORM calls made between browser steps
    are still synchronous code; it is put back afterwards, so no later test, and no process
    a later test starts (`check --deploy` refuses the variable), inherits it."""
    from playwright.sync_api import sync_playwright

    executable = chromium_or_skip()
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            args = ["--no-sandbox"] if os.geteuid() == 0 else []  # root cannot use the sandbox
            browser = playwright.chromium.launch(executable_path=executable, args=args)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


def screenshot(page: Any, name: str, **kwargs: Any) -> Path | None:
    """Saves docs/img/<name>.png when NOTIFYHUB_SCREENSHOTS=1 (the docs' images)."""
    if os.environ.get("NOTIFYHUB_SCREENSHOTS") != "1":
        return None
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), **kwargs)
    return path
