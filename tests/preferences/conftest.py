"""Fixtures for the preferences tests: recipients of the API's client and of another client."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import ClientFactory, RecipientFactory


@pytest.fixture
def ada(client_tenant: Any) -> Any:
    """A recipient of the API's client, in Paris."""
    return RecipientFactory(client=client_tenant, external_id="ada", phone="+14155550100",
                            whatsapp="+14155550163", timezone="Europe/Paris")


@pytest.fixture
def other_client_recipient(db: None) -> Any:
    """Another client's recipient with the same external id and phone number as `ada`."""
    return RecipientFactory(client=ClientFactory(), external_id="ada", phone="+14155550100",
                            timezone="UTC")
