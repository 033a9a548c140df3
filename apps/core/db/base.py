"""PostgreSQL backend: Django's, instrumented like django-prometheus', two per-request costs cut.

* **Health check without a round trip.** With `CONN_HEALTH_CHECKS` Django checks a persistent
  connection before its first use in each request with `SELECT 1` (one round trip per request).
  Here the socket is polled first (no wait): a connection the server has ended (restart,
  `pg_terminate_backend`, idle timeout, crash) has something to read — the server's FATAL
  message or the end of the stream — while a healthy idle connection has nothing. Only then is
  Django's `SELECT 1` run (and the connection replaced if it fails). A peer that vanished
  without closing (a network partition) is not seen by either check until a query times out.
* **Longer statements keep their parsed form.** For client-side binding psycopg splits a
  query's text into parts once per distinct text (an LRU of 128 texts), but only for texts up
  to 4,096 characters and 50 parameters; the send path's one-round-trip INSERTs (a
  notification, its deliveries and events chained in one WITH; the recipients' upsert) are
  longer, so their text was re-parsed on every request (~8 % of the API's CPU per send). The
  limits are raised to 16,384 characters and 500 parameters: a few hundred KB per process
  at most, and a statement of a few recipients is parsed once.
* **Query metrics with their labels bound once.** The same `django_db_*` counters and histogram
  as django-prometheus' backend, without resolving the label values on every statement.
"""

from __future__ import annotations

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
from psycopg import _queries, pq

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


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        params["cursor_factory"] = _cursor_class(params["cursor_factory"], self.alias, self.vendor)
        return params

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
