"""The HTTP metrics the alerts and the dashboard read (apps/core/http_metrics.py)."""

from __future__ import annotations

import pytest
from django.test import Client as DjangoClient
from prometheus_client import REGISTRY

RESPONSES = "django_http_responses_total_by_status_view_method_total"
LATENCY_COUNT = "django_http_requests_latency_seconds_by_view_method_count"
LATENCY_BUCKET = "django_http_requests_latency_seconds_by_view_method_bucket"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.django_db
def test_a_response_is_counted_by_status_view_and_method_with_its_latency() -> None:
    labels = {"view": "health", "method": "GET"}
    before = sample(RESPONSES, status="200", **labels)
    before_count = sample(LATENCY_COUNT, **labels)
    before_inf = sample(LATENCY_BUCKET, le="+Inf", **labels)

    assert DjangoClient().get("/api/v1/health").status_code == 200
    assert DjangoClient().get("/api/v1/health").status_code == 200

    assert sample(RESPONSES, status="200", **labels) == before + 2
    assert sample(LATENCY_COUNT, **labels) == before_count + 2
    assert sample(LATENCY_BUCKET, le="+Inf", **labels) == before_inf + 2


@pytest.mark.django_db
def test_an_unauthenticated_send_is_counted_under_its_own_status() -> None:
    labels = {"view": "notifications", "method": "POST"}
    before = sample(RESPONSES, status="401", **labels)
    ok_before = sample(RESPONSES, status="202", **labels)

    response = DjangoClient().post("/api/v1/notifications", data="{}",
                                   content_type="application/json")

    assert response.status_code == 401
    assert sample(RESPONSES, status="401", **labels) == before + 1
    assert sample(RESPONSES, status="202", **labels) == ok_before


@pytest.mark.django_db
def test_unknown_urls_and_methods_do_not_make_new_label_values() -> None:
    before = sample(RESPONSES, status="404", view="<unnamed view>", method="GET")
    odd_before = sample(LATENCY_COUNT, view="health", method="<invalid method>")

    assert DjangoClient().get("/no-such-page-4711").status_code == 404
    assert DjangoClient().generic("BREW", "/api/v1/health").status_code == 405

    assert sample(RESPONSES, status="404", view="<unnamed view>", method="GET") == before + 1
    assert sample(LATENCY_COUNT, view="health", method="<invalid method>") == odd_before + 1
    assert REGISTRY.get_sample_value(LATENCY_COUNT, {"view": "health", "method": "BREW"}) is None
