from __future__ import annotations

import logging
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.factories import ClientFactory, api_key_for

from .support import ADA, History, build_history


@pytest.fixture
def history(client_tenant: Any, api: APIClient, caplog: pytest.LogCaptureFixture,
            settings: Any) -> History:
    """Ada's full history at `client_tenant`; logs are captured at DEBUG from the start."""
    caplog.set_level(logging.DEBUG)
    # Push is offered when FCM is configured; nothing here calls it (no worker runs).
    settings.FCM_SERVICE_ACCOUNT_FILE = "/nonexistent/fcm-service-account.json"
    return build_history(client_tenant, api)


@pytest.fixture
def other_client_api() -> tuple[Any, APIClient]:
    """Another client with its own recipient `ada` (other addresses)."""
    other = ClientFactory()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(other)}")
    assert api.put("/api/v1/recipients/ada", {"email": "someone.else@example.net"},
                   format="json").status_code == 201
    assert ADA["email"] != "someone.else@example.net"
    return other, api
