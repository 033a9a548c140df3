"""The sandbox tests run against sandbox processes only: no database, broker or Django."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def _clean_test_broker() -> None:
    """Overrides the shared autouse fixture: these tests need no Redis broker."""


@pytest.fixture
def _sendgrid_public_key() -> None:
    """Overrides the shared autouse fixture: these tests need no Django settings."""
