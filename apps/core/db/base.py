"""PostgreSQL backend: Django's, instrumented like django-prometheus', two per-request costs cut.

* **Health check without a round trip.** With `CONN_HEALTH_CHECKS` Django checks a persistent
  connection before its first use in each request with `SELECT 1` (one round trip per request).
  Here the socket is polled first (no wait): a connection the server has ended (restart,
  `pg_terminate_backend`, idle timeout, crash) has something to read — the server's FATAL
  message or the end of the stream — while a healthy idle connection has nothing. Only then is
  Django's `SELECT 1` run (and the connection replaced if it fails). A peer that vanished
  without closing (a network partition) is not seen by either check until a query times out.
* **Longer statements keep their parsed form.** psycopg splits a query's text into parts
  once per distinct text (an LRU of 128 texts), but only for texts up to 4,096 characters and
  50 parameters; the send path's one-round-trip INSERTs (a notification, its deliveries and
  events chained in one WITH; the recipients' upsert) are longer, so their text was re-parsed
  on every request (~8 % of the API's CPU per send). The limits are raised to 16,384
  characters and 500 parameters: a few hundred KB per process at most, and a statement of a
  few recipients is parsed once.
* **Timestamps read by psycopg's C loader.** Django registers its own `timestamptz` loader, a
  Python subclass of psycopg's pure-Python one that sets the connection's time zone on each
  value: ~4 µs per value against ~0.2 µs for psycopg's C loader (a list page of 50
  notifications reads ~200 of them, a dispatch chunk ~600). With `USE_TZ` and the database
  time zone UTC (the default), the connection's adapters use the C loader instead: Django
  sets the session's `TimeZone` to UTC on connect and the C loader reads values in the
  session's time zone, so the datetimes are the same aware UTC values (and stay right if a
  session changes its `TimeZone`, where Django's loader would relabel them).
* **Query metrics with their labels bound once.** The same `django_db_*` counters and histogram
  as django-prometheus' backend, without resolving the label values on every statement.
"""

from __future__ import annotations

import datetime
import functools
import select
import time
from typing import Any

import psycopg
from django.db.backends.postgresql import base
from django_prometheus.db import (
    connection_errors_total,
    connections_total,
    errors_total,
    execute_many_total,
    execute_total,
    query_duration_seconds,
)
from psycopg import _queries, adapt, pq

# psycopg's own (module-level) limits for its cache of parsed query texts; see above. A
# psycopg upgrade that renames them fails tests/core/test_db_backend.py.
_queries.MAX_CACHED_STATEMENT_LENGTH = max(_queries.MAX_CACHED_STATEMENT_LENGTH, 16_384)
_queries.MAX_CACHED_STATEMENT_PARAMS = max(_queries.MAX_CACHED_STATEMENT_PARAMS, 500)


def _cursor_class(cursor_class: type, alias: str, vendor: str) -> type:
    executed = execute_total.labels(alias, vendor)
    executed_many = execute_many_total.labels(alias, vendor)
    duration = query_duration_seconds.labels(alias, vendor)

    class InstrumentedCursor(cursor_class):  # type: ignore[valid-type, misc]
        def execute(self, *args: Any, **kwargs: Any) -> Any:
            executed.inc()
            start = time.perf_counter()
            try:
                return super().execute(*args, **kwargs)
            except Exception as exc:
                errors_total.labels(alias, vendor, type(exc).__name__).inc()
                raise
            finally:
                duration.observe(time.perf_counter() - start)

        def executemany(self, query: Any, params_seq: Any, *args: Any, **kwargs: Any) -> Any:
            params_seq = list(params_seq)
            executed.inc(len(params_seq))
            executed_many.inc(len(params_seq))
            start = time.perf_counter()
            try:
                return super().executemany(query, params_seq, *args, **kwargs)
            except Exception as exc:
                errors_total.labels(alias, vendor, type(exc).__name__).inc()
                raise
            finally:
                duration.observe(time.perf_counter() - start)

    return InstrumentedCursor


_TIMESTAMPTZ_OID = psycopg.adapters.types["timestamptz"].oid


def _c_timestamptz_loader() -> Any:
    """psycopg's compiled `timestamptz` text loader, None without psycopg's C extension."""
    loader: Any = psycopg.adapters.get_loader(_TIMESTAMPTZ_OID, pq.Format.TEXT)
    return loader if loader.__module__.startswith(("psycopg_binary", "psycopg_c")) else None


@functools.cache
def _with_c_timestamptz(template: adapt.AdaptersMap) -> adapt.AdaptersMap:
    """Django's adapters template with psycopg's C `timestamptz` loader."""
    adapters = adapt.AdaptersMap(template)
    adapters.register_loader("timestamptz", _c_timestamptz_loader())
    return adapters


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        params["cursor_factory"] = _cursor_class(params["cursor_factory"], self.alias, self.vendor)
        if self._c_timestamps:
            params["context"] = _with_c_timestamptz(params["context"])
        return params

    @functools.cached_property
    def _c_timestamps(self) -> bool:
        """Timestamps are read by psycopg's C loader (see the module's docstring)."""
        return self.timezone == datetime.UTC and _c_timestamptz_loader() is not None

    def create_cursor(self, name: str | None = None) -> Any:
        if not self._c_timestamps:
            return super().create_cursor(name)
        # Django's create_cursor without its time-zone check, which expects its own loader
        # class (the connection's loader already reads values in the session's UTC).
        if not name:
            return self.connection.cursor()
        if self.settings_dict["OPTIONS"].get("server_side_binding") is not True:
            return base.ServerSideCursor(  # type: ignore[call-arg]
                self.connection, name=name, scrollable=False, withhold=self.connection.autocommit)
        return self.connection.cursor(name, scrollable=False, withhold=self.connection.autocommit)

    def get_new_connection(self, conn_params: Any) -> Any:
        connections_total.labels(self.alias, self.vendor).inc()
        try:
            return super().get_new_connection(conn_params)
        except Exception:
            connection_errors_total.labels(self.alias, self.vendor).inc()
            raise

    def close_if_health_check_failed(self) -> None:
        if (self.connection is not None and getattr(self, "health_check_enabled", False)
                and not getattr(self, "health_check_done", True) and self._socket_quiet()):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def _socket_quiet(self) -> bool:
        """True if the idle connection's socket is open with nothing to read."""
        conn = self.connection
        if conn is None:
            return False
        try:
            pgconn = conn.pgconn
            if (conn.closed or pgconn.status != pq.ConnStatus.OK
                    or pgconn.transaction_status != pq.TransactionStatus.IDLE):
                return False
            poller = select.poll()
            poller.register(pgconn.socket, select.POLLIN | select.POLLPRI)
            return not poller.poll(0)
        except (OSError, ValueError, psycopg.Error):  # no socket any more: let Django check
            return False
