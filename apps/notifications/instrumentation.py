"""Prometheus metrics of the delivery pipeline (exposed with django-prometheus' at `/metrics`).

- `notifyhub_deliveries_total{channel,provider,status}`: delivery outcomes as they are recorded
  (worker: sent, retrying, failed, suppressed; receipts: delivered, bounced, failed; relay
  sweeper: failed when the worker died on every attempt).
- `notifyhub_delivery_latency_seconds{channel}`: accept → sent.
- `notifyhub_provider_calls_total{provider,outcome}` and `notifyhub_provider_call_seconds
  {provider}`: every provider call (outcome sent / retryable / permanent / exception).
- `notifyhub_accepted_deliveries_total{channel,priority}` (web): deliveries accepted by the API.
- `notifyhub_api_limit_rejections_total{reason}` (web; apps/clients/throttling.py): requests
  refused as throttled or quota_exceeded.

Processes: a metric lives in the process that records it. Dispatch and receipts run in Celery
workers (receipts also in the web process), so every process of a host writes to one directory:
`PROMETHEUS_MULTIPROC_DIR` (empty when the processes start; `make run` uses `.run/prometheus/`,
emptied on each start) in the environment of gunicorn and of the Celery workers.
prometheus_client then writes each process' values to files there and django-prometheus'
`/metrics` view aggregates them all (a MultiProcessCollector registry whenever the variable is
set). Dead Celery pool processes are marked with `mark_process_dead` below (connected to
`worker_process_shutdown`); gunicorn's `child_exit` in notifyhub/gunicorn.conf.py does the same
for web workers. Workers on another host need their own exporter there
(`start_worker_exporter(port)`), scraped separately.

Recording never raises: a metrics bug must not fail a delivery.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, start_http_server

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

DELIVERIES = Counter(
    "notifyhub_deliveries", "Delivery outcomes recorded, by channel, provider and status.",
    ["channel", "provider", "status"],
)
DELIVERY_LATENCY = Histogram(
    "notifyhub_delivery_latency_seconds", "Accept → sent, per channel.", ["channel"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_CALLS = Counter(
    "notifyhub_provider_calls", "Provider calls by outcome (sent, retryable, permanent, exception).",
    ["provider", "outcome"],
)
PROVIDER_CALL_SECONDS = Histogram(
    "notifyhub_provider_call_seconds", "Provider call duration.", ["provider"], buckets=CALL_BUCKETS,
)
ACCEPTED = Counter(
    "notifyhub_accepted_deliveries", "Deliveries accepted by the API.", ["channel", "priority"],
)

# Statuses a worker or a receipt records as an outcome (not deferrals or holds).
OUTCOME_STATUSES = frozenset({"sent", "retrying", "failed", "suppressed", "delivered", "bounced"})
NOT_OUTCOMES = frozenset({"deferred", "held"})


def observe_outcomes(
    rows: Iterable[Mapping[str, Any]], deliveries: Iterable[Any], now: datetime | None = None
) -> None:
    """Counts outcome rows as dispatch writes them (dicts with id, status, event, provider);
    `deliveries` are the Delivery rows they belong to (for the channel and the accept time)."""
    try:
        by_id = {str(d.id): d for d in deliveries}
        now = now or timezone.now()
        for row in rows:
            status = row.get("status", "")
            if status not in OUTCOME_STATUSES or row.get("event") in NOT_OUTCOMES:
                continue
            delivery = by_id.get(str(row.get("id")))
            channel = getattr(delivery, "channel", "") or "unknown"
            DELIVERIES.labels(channel, row.get("provider") or "none", status).inc()
            if status == "sent" and delivery is not None:
                DELIVERY_LATENCY.labels(channel).observe(
                    max((now - delivery.created_at).total_seconds(), 0.0))
    except Exception:
        logger.exception("metrics: could not record delivery outcomes")


def observe_receipts(deliveries: Iterable[Any]) -> None:
    """Counts deliveries whose status a provider receipt moved (delivered, bounced, failed)."""
    try:
        for d in deliveries:
            if d.status in OUTCOME_STATUSES:
                DELIVERIES.labels(d.channel or "unknown", d.provider or "none", d.status).inc()
    except Exception:
        logger.exception("metrics: could not record receipts")


def observe_failed(channel_providers: Iterable[tuple[str, str]]) -> None:
    """Counts deliveries failed outside dispatch and receipts (the relay sweeper's
    `worker_lost`): (channel, provider) per delivery."""
    try:
        for channel, provider in channel_providers:
            DELIVERIES.labels(channel or "unknown", provider or "none", "failed").inc()
    except Exception:
        logger.exception("metrics: could not record failed deliveries")


def observe_provider_call(provider: str, outcome: str, seconds: float) -> None:
    try:
        PROVIDER_CALLS.labels(provider, outcome).inc()
        PROVIDER_CALL_SECONDS.labels(provider).observe(seconds)
    except Exception:
        logger.exception("metrics: could not record a provider call")


def timed_send(provider: Any, message: Any) -> Any:
    """`provider.send(message)`, timed and counted (drop-in for the call in dispatch)."""
    started = time.perf_counter()
    try:
        result = provider.send(message)
    except BaseException:
        observe_provider_call(provider.name, "exception", time.perf_counter() - started)
        raise
    observe_provider_call(provider.name, str(getattr(result.outcome, "value", result.outcome)),
                          time.perf_counter() - started)
    return result


def observe_accepted(deliveries: Sequence[Any]) -> None:
    """Web side: deliveries the API accepted (objects with channel and priority)."""
    counts: dict[tuple[str, str], int] = {}
    for d in deliveries:
        counts[(d.channel, d.priority)] = counts.get((d.channel, d.priority), 0) + 1
    observe_accepted_counts(counts)


def observe_accepted_counts(counts: Mapping[tuple[str, str], int]) -> None:
    """Web side: (channel, priority) → deliveries the API accepted."""
    try:
        for (channel, priority), n in counts.items():
            ACCEPTED.labels(channel, priority).inc(n)
    except Exception:
        logger.exception("metrics: could not record accepted deliveries")


# --- multiprocess mode ------------------------------------------------------------------------

def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def mark_process_dead(pid: int | None = None) -> None:
    """Drops a finished process' live gauges from the multiprocess directory (no-op otherwise)."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(pid or os.getpid())


def gunicorn_child_exit(server: Any, worker: Any) -> None:
    """gunicorn `child_exit` hook for multiprocess mode."""
    mark_process_dead(worker.pid)


def start_worker_exporter(port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104
    """Serves this host's metrics on `port` (aggregating every process in multiprocess mode):
    for Celery workers on a host without the web process."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        start_http_server(port, addr=addr, registry=registry)
    else:
        start_http_server(port, addr=addr)


def _connect_celery_signals() -> None:
    try:
        from celery.signals import worker_process_shutdown
    except ImportError:  # pragma: no cover - celery is a dependency
        return

    @worker_process_shutdown.connect(weak=False)
    def _pool_process_exit(**kwargs: Any) -> None:
        mark_process_dead(kwargs.get("pid"))


_connect_celery_signals()
