"""gunicorn settings (`gunicorn -c notifyhub/gunicorn.conf.py notifyhub.wsgi:application`,
as the Procfile and the Dockerfile run it). Command-line flags still override these.

Prometheus multiprocess mode: with PROMETHEUS_MULTIPROC_DIR set (an empty directory shared by
gunicorn and the Celery workers of this host, emptied before they start), each process writes
its counters to files there and `/metrics` adds them all up. A gunicorn worker that exits is
marked dead so its live gauges drop out (counters keep counting)."""

from __future__ import annotations

import os
from typing import Any

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
# Errors gunicorn answers itself (a NUL byte in a header …) in the API's JSON error format, and
# URLs in the access log masked (no query values, no external ids or addresses in paths):
# notifyhub/gunicorn_support.py. The threaded worker is what `threads > 1` selects anyway.
worker_class = "notifyhub.gunicorn_support.JsonErrorThreadWorker"
logger_class = "notifyhub.gunicorn_support.MaskedAccessLogger"


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
