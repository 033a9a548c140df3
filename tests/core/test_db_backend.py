"""apps.core.db: a persistent connection the server has ended is replaced before the request
uses it (the health check), and statements are still counted in Prometheus."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import connection
from prometheus_client import REGISTRY

pytestmark = pytest.mark.django_db(transaction=True)


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _new_request() -> None:
    """What Django does between two requests for a persistent connection."""
    connection.close_if_unusable_or_obsolete()


def test_a_connection_ended_by_the_server_is_replaced_before_use() -> None:
    assert connection.health_check_enabled
    connection.close()  # a fresh one (CONN_MAX_AGE would close an old one between requests)
    pid = _backend_pid()
    _new_request()
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    # The terminated backend's FATAL message and end of stream reach our socket.
    for _ in range(100):
        if not connection._socket_quiet():
            break
        time.sleep(0.02)
    assert _backend_pid() != pid


def test_a_healthy_connection_is_kept() -> None:
    connection.close()
    pid = _backend_pid()
    _new_request()
    assert connection._socket_quiet()
    assert _backend_pid() == pid


def test_statements_are_counted() -> None:
    labels = {"alias": "default", "vendor": "postgresql"}
    _backend_pid()  # connected (setting up a connection runs statements of its own)
    before = REGISTRY.get_sample_value("django_db_execute_total", labels) or 0
    _backend_pid()
    assert (REGISTRY.get_sample_value("django_db_execute_total", labels) or 0) == before + 1
