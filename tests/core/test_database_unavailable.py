"""While PostgreSQL cannot be reached, every request that needs it is answered 503 with
Retry-After (and the JSON error format on the API), never a 500 and never a hang.

The database is made really unavailable for the request: Django's connection is pointed at a
port where nothing listens (refused at once), or at a socket that accepts the connection and
never answers (only `connect_timeout` ends the wait). Nothing is mocked."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.test import Client as DjangoClient
from rest_framework.test import APIClient

from apps.notifications.models import Notification
from tests.factories import ClientFactory, TemplateFactory, api_key_for


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Database:
    """Moves Django's default connection to 127.0.0.1:<port>, and back."""

    def __init__(self, blocker: Any) -> None:
        self.blocker = blocker
        self.connection = connections["default"]
        self.saved = dict(self.connection.settings_dict)

    def point_at(self, port: int) -> None:
        with self.blocker.unblock():
            self.connection.close()
        self.connection.settings_dict.update(HOST="127.0.0.1", PORT=str(port))

    def restore(self) -> None:
        with self.blocker.unblock():
            self.connection.close()
        self.connection.settings_dict.clear()
        self.connection.settings_dict.update(self.saved)


@pytest.fixture
def database(django_db_blocker: Any) -> Iterator[_Database]:
    db = _Database(django_db_blocker)
    yield db
    db.restore()


@pytest.fixture
def tenant_key(transactional_db: None) -> tuple[Any, str]:
    """A client with a working key and template, committed (the test closes the connection)."""
    tenant = ClientFactory()
    TemplateFactory(client=tenant, key="welcome")
    return tenant, api_key_for(tenant)


def _send_body() -> dict[str, Any]:
    return {"template_id": "welcome", "recipients": [{"id": "u1", "email": "u1@example.com"}],
            "variables": {"name": "Ada"}}


def _assert_api_503(response: Any) -> None:
    assert response.status_code == 503, response.content[:300]
    assert response["Retry-After"] == "5"
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == "service_unavailable"
    assert body["error"]["fields"] == {}
    assert "retry" in body["error"]["message"].lower()


def test_api_answers_503_with_retry_after_while_the_database_refuses_connections(
    tenant_key: tuple[Any, str], database: _Database
) -> None:
    # Given a key that sends fine while the database is up
    _, key = tenant_key
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.get("/api/v1/notifications").status_code == 200

    # When PostgreSQL stops answering (nothing listens on its port any more)
    database.point_at(_closed_port())
    send = api.post("/api/v1/notifications", _send_body(), format="json",
                    HTTP_IDEMPOTENCY_KEY="db-down-1")
    listing = api.get("/api/v1/notifications")

    # Then the send and the read are 503 + Retry-After in the error format
    _assert_api_503(send)
    _assert_api_503(listing)


def test_a_send_refused_with_503_stored_nothing(
    tenant_key: tuple[Any, str], database: _Database
) -> None:
    tenant, key = tenant_key
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    database.point_at(_closed_port())

    _assert_api_503(api.post("/api/v1/notifications", _send_body(), format="json"))

    # When the database is back, the client's retry is the only send
    database.restore()
    assert not Notification.objects.filter(client=tenant).exists()
    retried = api.post("/api/v1/notifications", _send_body(), format="json")
    assert retried.status_code == 202, retried.content[:300]
    assert Notification.objects.filter(client=tenant).count() == 1


def test_plain_django_views_and_the_admin_answer_503_not_500(
    tenant_key: tuple[Any, str], database: _Database
) -> None:
    browser = DjangoClient(raise_request_exception=False)
    browser.cookies["sessionid"] = "a" * 32  # the admin reads the session from the database
    database.point_at(_closed_port())

    admin = browser.get("/admin/")

    assert admin.status_code == 503
    assert admin["Retry-After"] == "5"
    assert b"Service unavailable" in admin.content


def test_a_database_that_accepts_connections_but_never_answers_is_a_503_not_a_hang(
    tenant_key: tuple[Any, str], database: _Database, settings: Any
) -> None:
    # Given a "database" whose TCP port accepts connections and then says nothing (a server
    # hung mid-restart, a half-open proxy): only the connect timeout ends the wait.
    assert settings.DATABASES["default"]["OPTIONS"]["connect_timeout"] <= 5
    _, key = tenant_key
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        database.point_at(int(silent.getsockname()[1]))

        # When a client sends (pytest-timeout ends a hang as a failure)
        response = api.post("/api/v1/notifications", _send_body(), format="json")

    # Then it gets a 503 it can retry
    _assert_api_503(response)
