"""The API's HTTP metrics: per response, its status, view and method, and its latency.

These are the two series of django-prometheus' middleware that the alerts and the dashboard
read (deploy/prometheus/alerts.yml, deploy/grafana/notifyhub.json), under the same names,
labels and buckets (PROMETHEUS_LATENCY_BUCKETS):

* `django_http_responses_total_by_status_view_method_total{status, view, method}`
* `django_http_requests_latency_seconds_by_view_method{view, method}` (a histogram)

django-prometheus' two middlewares recorded eleven series per request (by method, by
transport, body sizes, charsets …), looking up each labelled child on every request: ~5 % of
the instructions of a single send (docs/operations.md, "Ninth round"). This one middleware
binds each label set's children once per process and records two.

The latency is measured around everything the middleware wraps: it is first in MIDDLEWARE,
so it includes the other middlewares (django-prometheus measured from inside them). A view
that did not resolve (a 404 for an unknown URL) is `<unnamed view>`; a method outside HTTP's
standard ones is `<invalid method>`, so a client cannot grow the label sets."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter, Histogram

RESPONSES = Counter("django_http_responses_total_by_status_view_method",
                    "Count of responses by status, view, method.", ["status", "view", "method"])
LATENCY = Histogram("django_http_requests_latency_seconds_by_view_method",
                    "Histogram of request processing time labelled by view.", ["view", "method"],
                    buckets=settings.PROMETHEUS_LATENCY_BUCKETS)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH"})
UNNAMED_VIEW = "<unnamed view>"
INVALID_METHOD = "<invalid method>"


class HttpMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        # Bound children by label values: a dict hit instead of `labels()`'s checks and lock.
        self._latency: dict[tuple[str, str], Any] = {}
        self._responses: dict[tuple[int, str, str], Any] = {}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - start
        method = request.method if request.method in METHODS else INVALID_METHOD
        match = getattr(request, "resolver_match", None)
        view = (match.view_name if match is not None else None) or UNNAMED_VIEW
        latency = self._latency.get((view, method))
        if latency is None:
            latency = self._latency[view, method] = LATENCY.labels(view=view, method=method)
        latency.observe(elapsed)
        status = response.status_code
        counter = self._responses.get((status, view, method))
        if counter is None:
            counter = self._responses[status, view, method] = RESPONSES.labels(
                status=str(status), view=view, method=method)
        counter.inc()
        return response
