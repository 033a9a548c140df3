"""Metrics read at scrape time: what the pipeline holds now, rather than what happened.

- `notifyhub_queue_depth{queue}`: messages waiting in the broker, per queue (the four
  priorities, webhooks, maintenance).
- `notifyhub_queue_oldest_age_seconds{priority}`: how long the oldest delivery that is due and
  waiting for a worker (pending, queued or retrying, its due time passed) has waited, per
  priority; 0 when none waits. Consumer lag, whatever the broker holds (a lost message still
  counts until the relay sweeper hands it out again).
- `notifyhub_provider_breaker_open{channel,provider}`: 1 while a provider's circuit breaker is
  open or half-open.
- `notifyhub_webhook_endpoints_failing` and `notifyhub_webhook_endpoint_failing_seconds`:
  client webhook endpoints whose deliveries keep failing (`failing_since` set, not disabled
  or deleted), and how long the longest-failing one has failed.

Counters and histograms live in apps/notifications/instrumentation.py; these gauges are
computed by `/metrics` itself (`metrics_view`, wrapping django-prometheus' exposition), so
they are fresh on every scrape and the same in single- and multi-process mode. Each family is
read on its own: a store that does not answer drops its families from that scrape (logged),
never the scrape. The database reads are bounded: a statement timeout, and the in-flight
partial index for the age.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator

import prometheus_client
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from apps.core.queues import Priority

logger = logging.getLogger(__name__)

# A delivery a worker may take once due (models.CLAIMABLE), i.e. waiting for one.
WAITING = ["pending", "queued", "retrying"]
STATEMENT_TIMEOUT_MS = 2000


def queue_depth() -> Iterator[GaugeMetricFamily]:
    from .metrics import queue_depths

    depths = queue_depths()
    if not depths:
        raise ConnectionError("broker unavailable")
    family = GaugeMetricFamily("notifyhub_queue_depth",
                               "Messages waiting in the broker, per queue.", labels=["queue"])
    for queue, depth in depths.items():
        family.add_metric([queue], depth)
    yield family


def oldest_age() -> Iterator[GaugeMetricFamily]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
        cursor.execute(
            """
            SELECT priority, EXTRACT(EPOCH FROM (%s - min(COALESCE(due_at, created_at))))
            FROM notifications_delivery
            WHERE status = ANY(%s) AND (due_at IS NULL OR due_at <= %s)
            GROUP BY priority
            """,
            [timezone.now(), WAITING, timezone.now()],
        )
        ages = {priority: max(float(age), 0.0) for priority, age in cursor.fetchall()}
    family = GaugeMetricFamily(
        "notifyhub_queue_oldest_age_seconds",
        "Age of the oldest delivery due and waiting for a worker, per priority (0: none).",
        labels=["priority"])
    for priority in Priority:
        family.add_metric([priority.value], ages.get(priority.value, 0.0))
    yield family


def breakers() -> Iterator[GaugeMetricFamily]:
    from .api.metrics_selectors import provider_states

    family = GaugeMetricFamily(
        "notifyhub_provider_breaker_open",
        "1 while the provider's circuit breaker is open or half-open.",
        labels=["channel", "provider"])
    for state in provider_states():
        family.add_metric([state["channel"], state["provider"]],
                          1.0 if state["breaker"] in ("open", "half_open") else 0.0)
    yield family


def webhook_endpoints() -> Iterator[GaugeMetricFamily]:
    from apps.webhooks.models import WebhookEndpoint

    failing = [since for since in WebhookEndpoint.objects.filter(
        failing_since__isnull=False, disabled_at__isnull=True, deleted_at__isnull=True,
    ).values_list("failing_since", flat=True)[:10_000] if since is not None]
    now = timezone.now()
    yield GaugeMetricFamily("notifyhub_webhook_endpoints_failing",
                            "Client webhook endpoints whose deliveries keep failing.",
                            value=len(failing))
    yield GaugeMetricFamily(
        "notifyhub_webhook_endpoint_failing_seconds",
        "How long the longest-failing client webhook endpoint has failed (0: none).",
        value=max(((now - since).total_seconds() for since in failing), default=0.0))


READERS: list[Callable[[], Iterator[GaugeMetricFamily]]] = [
    queue_depth, oldest_age, breakers, webhook_endpoints]


class StateCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        for read in READERS:
            try:
                families = list(read())
            except Exception:  # a store down must not fail the scrape
                logger.warning("metrics: %s could not be read", read.__name__, exc_info=True)
                continue
            yield from families


STATE_REGISTRY = CollectorRegistry(auto_describe=False)
STATE_REGISTRY.register(StateCollector())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """`/metrics`: django-prometheus' exposition (every process' counters in multiprocess
    mode), then the state gauges above."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = prometheus_client.REGISTRY
    body = prometheus_client.generate_latest(registry) + prometheus_client.generate_latest(
        STATE_REGISTRY)
    return HttpResponse(body, content_type=prometheus_client.CONTENT_TYPE_LATEST)
