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


def test_a_long_statement_is_parsed_once_per_text() -> None:
    """The send path's one-round-trip INSERTs are over psycopg's default limits (4,096
    characters, 50 parameters) for reusing a parsed query text; apps.core.db raises them."""
    from psycopg import _queries

    # The parser of the binding in use (notifyhub/settings: server-side by default).
    server_side = connection.settings_dict["OPTIONS"].get("server_side_binding")
    parse = _queries._query2pg if server_side else _queries._query2pg_client
    values = ", ".join(["(%s::int)"] * 120)
    sql = f"SELECT count(*) /* {'x' * 5000} */ FROM (VALUES {values}) v(n)"
    with connection.cursor() as cursor:
        cursor.execute(sql, list(range(120)))  # parsed (or found) here
        before = parse.cache_info().hits
        cursor.execute(sql, list(range(120, 240)))
        assert cursor.fetchone()[0] == 120
    assert parse.cache_info().hits == before + 1


@pytest.mark.django_db
def test_statements_are_bound_server_side_and_prepared_after_a_few_runs() -> None:
    """notifyhub/settings: values travel apart from the text, and a statement run
    DB_PREPARE_THRESHOLD times is prepared (PostgreSQL parses and plans it once)."""
    assert connection.settings_dict["OPTIONS"]["server_side_binding"] is True
    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]
    with connection.cursor() as cursor:
        for _ in range(threshold + 1):
            cursor.execute("SELECT %s::int + 1 /* prepared-check */", [41])
            assert cursor.fetchone()[0] == 42
        cursor.execute("SELECT count(*) FROM pg_prepared_statements "
                       "WHERE statement LIKE %s", ["%prepared-check%"])
        assert cursor.fetchone()[0] == 1


@pytest.mark.django_db
def test_timestamps_read_back_as_the_same_aware_utc_instants() -> None:
    """Timestamps are read by psycopg's C loader (apps.core.db), as aware UTC datetimes, by
    plain and server-side cursors, and stay right if a session changes its time zone."""
    import datetime

    from django.db import transaction
    from django.utils import timezone

    from apps.audit.models import AuditLog

    written = datetime.datetime(2026, 3, 29, 0, 59, 59, 123456, tzinfo=datetime.UTC)
    entry = AuditLog.objects.create(action="test.timestamps", actor_type="system",
                                   created_at=written)
    fetched = AuditLog.objects.get(id=entry.id).created_at
    assert fetched == written and fetched.utcoffset() == datetime.timedelta(0)
    with transaction.atomic():  # a server-side cursor (chunked_cursor)
        streamed = [e.created_at for e in AuditLog.objects.filter(id=entry.id).iterator()]
    assert streamed == [written]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL TIME ZONE 'Europe/Paris'")
        cursor.execute("SELECT created_at FROM audit_auditlog WHERE id = %s", [entry.id])
        assert cursor.fetchone()[0] == written  # the same instant, whatever its tzinfo
    assert timezone.is_aware(AuditLog.objects.get(id=entry.id).created_at)
    loader = connection.connection.adapters.get_loader(1184, 0)
    assert loader.__module__.startswith(("psycopg_binary", "psycopg_c"))
