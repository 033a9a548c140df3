"""OpenTelemetry traces (apps/core/tracing.py): off unless an OTEL_* exporter is configured (and
then nothing of OpenTelemetry is even imported); on, one trace covers a send across processes.
End to end: gunicorn and a real Celery worker export OTLP/HTTP to a collector in this test (an
HTTP server decoding the protobuf with opentelemetry-proto); a send with a client's W3C
`traceparent` gives the request's span, the publish, the task's run and the provider's HTTP call
in the client's trace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest

from apps.core.tracing import exporters_from_env
from tests.factories import ClientFactory, TemplateFactory, api_key_for
from tests.sandbox.receiver import HttpReceiver
from tests.support.processes import wait_for
from tests.support.sandbox import free_port

from .conftest import StartWebAndWorker


@pytest.mark.parametrize(("env", "exporters"), [
    ({}, []),
    ({"OTEL_SERVICE_NAME": "api"}, []),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, []),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": "console,otlp"}, ["console", "otlp"]),
    ({"OTEL_TRACES_EXPORTER": "zipkin,otlp"}, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
])
def test_tracing_is_on_only_when_an_exporter_is_configured(env: dict[str, str],
                                                           exporters: list[str]) -> None:
    assert exporters_from_env(env) == exporters


def _web_process(env: dict[str, str]) -> dict[str, Any]:
    """The web process once its application is built: the OpenTelemetry modules it loaded,
    its middleware and its tracer provider's class."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    code = ("import json, sys, notifyhub.wsgi; from django.conf import settings; "
            "from opentelemetry import trace; print(json.dumps({"
            "'modules': sorted(m for m in sys.modules if m.startswith('opentelemetry')), "
            "'middleware': list(settings.MIDDLEWARE), "
            "'provider': type(trace.get_tracer_provider()).__name__}))")
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def test_off_the_web_process_loads_no_tracing_sdk_exporter_or_instrumentation() -> None:
    web = _web_process({"DJANGO_SETTINGS_MODULE": "notifyhub.settings.test",
                        "OTEL_SERVICE_NAME": "api"})
    # redis-py imports the metrics SDK if it is installed (its own observability, inactive
    # unless initialised); nothing of traces is loaded.
    assert [m for m in web["modules"] if m.startswith(("opentelemetry.sdk.trace",
            "opentelemetry.exporter", "opentelemetry.instrumentation"))] == []
    assert not any("opentelemetry" in m for m in web["middleware"])
    assert web["provider"] == "ProxyTracerProvider"  # the API's no-op


def test_on_the_web_process_has_the_sdk_and_the_instrumentations() -> None:
    web = _web_process({"DJANGO_SETTINGS_MODULE": "notifyhub.settings.test",
                        "OTEL_TRACES_EXPORTER": "otlp",
                        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    for name in ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter",
                 "opentelemetry.instrumentation.django", "opentelemetry.instrumentation.celery",
                 "opentelemetry.instrumentation.psycopg", "opentelemetry.instrumentation.redis",
                 "opentelemetry.instrumentation.requests", "opentelemetry.instrumentation.urllib",
                 "opentelemetry.instrumentation.urllib3", "opentelemetry.instrumentation.httpx"):
        assert name in web["modules"]
    assert web["middleware"][0].startswith("opentelemetry.instrumentation.django")
    assert web["provider"] == "TracerProvider"


@dataclass(frozen=True)
class Span:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    links: tuple[tuple[str, str], ...] = ()  # (trace id, span id) of each linked span


def exported_spans(collector: HttpReceiver) -> list[Span]:
    """Every span posted to the collector (OTLP/HTTP protobuf, /v1/traces)."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    spans = []
    for request in collector.snapshot():
        assert request.path == "/v1/traces"
        headers = {name.lower(): value for name, value in request.headers.items()}
        assert headers["content-type"] == "application/x-protobuf"
        export = ExportTraceServiceRequest()
        export.ParseFromString(request.body)
        for resource_spans in export.resource_spans:
            service = next(a.value.string_value for a in resource_spans.resource.attributes
                           if a.key == "service.name")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a["key"]: next(iter(a["value"].values()), None)
                                  for a in MessageToDict(span).get("attributes", [])}
                    links = tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links)
                    spans.append(Span(service, span.trace_id.hex(), span.span_id.hex(),
                                      span.parent_span_id.hex(), span.name, span.kind, attributes,
                                      links))
    return spans


SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # opentelemetry.proto Span.SpanKind


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_one_trace_covers_the_request_the_publish_the_task_and_the_provider_call(
    worker_env: dict[str, str], clean_sandbox: Any, receiver: HttpReceiver,
    web_and_worker: StartWebAndWorker,
) -> None:
    collector = receiver  # the OTLP/HTTP collector
    port = free_port()
    # The provider's status callback comes back to this gunicorn (traced), not the test's
    # live server.
    env = {**worker_env, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.base_url,
           "OTEL_BSP_SCHEDULE_DELAY": "100", "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}
    tenant = ClientFactory(slug="tracing")
    TemplateFactory(client=tenant, key="otp", channels=["sms"], version__sms_body="Code {{ code }}")
    stack = web_and_worker(env, port=port)
    web = stack.web
    trace_id, client_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"

    def in_trace() -> list[Span]:
        return [s for s in exported_spans(collector) if s.trace_id == trace_id]

    def worker_called_the_provider() -> bool:
        return any(s.service == "notifyhub-worker" and s.kind == CLIENT and
                   s.attributes.get("http.request.method", s.attributes.get("http.method")) == "POST"
                   for s in in_trace())

    def receipt_processed() -> bool:
        return any(s.name == "delivery_receipts_apply" and s.links
                   for s in exported_spans(collector))

    try:
        send = urllib.request.Request(
            f"{web.url}/api/v1/notifications", method="POST", data=json.dumps({
                "recipients": [{"id": "grace", "phone": "+14155550100"}],
                "template_id": "otp", "variables": {"code": "123456", "name": "Grace"}}).encode(),
            headers={"Authorization": f"Bearer {api_key_for(tenant)}",
                     "Content-Type": "application/json",
                     "traceparent": f"00-{trace_id}-{client_span}-01"})
        with urllib.request.urlopen(send, timeout=10) as response:
            assert response.status == 202
        wait_for(worker_called_the_provider, timeout=60,
                 message="provider call traced")
        # Twilio's `delivered` status callback, as the sandbox posts it (to the URL the send
        # gave it, signed with the account's token), to this gunicorn.
        [message] = clean_sandbox.messages(provider="twilio")
        _post_twilio_status(message["status_callback"], env["TWILIO_AUTH_TOKEN"],
                            {"MessageSid": message["sid"], "MessageStatus": "delivered",
                             "AccountSid": message["account_sid"]})
        wait_for(receipt_processed, timeout=30, message="the provider's receipt traced")
    finally:
        stack.stop()

    spans = in_trace()
    by_id = {s.span_id: s for s in spans}
    # The API's request span continues the client's trace, under the client's span.
    [request] = [s for s in spans if s.kind == SERVER and s.service == "notifyhub-api"]
    assert request.parent_id == client_span
    assert request.attributes.get("http.request.method", request.attributes.get("http.method")) == "POST"
    # The publish of the dispatch task happens within it (in the web process) …
    [publish] = [s for s in spans if s.kind == PRODUCER
                 and s.name == "apply_async/notifications.deliveries_dispatch_task"]
    assert publish.service == "notifyhub-api"
    assert _ancestors(publish, by_id)[-1] == request
    # … and the worker's run of the task is its child, in the worker's process.
    [run] = [s for s in spans if s.kind == CONSUMER
             and s.name == "run/notifications.deliveries_dispatch_task"]
    assert (run.service, run.parent_id) == ("notifyhub-worker", publish.span_id)
    # The provider's HTTP call (the SMS provider's SDK, on requests), made by the dispatch's
    # sender thread, is within the task's run.
    provider_calls = [s for s in spans if s.kind == CLIENT and s.service == "notifyhub-worker"
                      and run in _ancestors(s, by_id)]
    assert provider_calls, [(s.name, s.service, s.kind) for s in spans]
    # The send has a span of its own, within the task's run, and the provider's receipt (its
    # status callback, a request of its own in its own trace) is processed in a span linked
    # to it.
    [send_span] = [s for s in spans if s.name == "send twilio_sms"]
    assert run in _ancestors(send_span, by_id)
    receipts = [s for s in exported_spans(collector) if s.name == "delivery_receipts_apply"
                and s.links]
    assert receipts
    for receipt in receipts:  # (Twilio calls back for `sent`, then `delivered`)
        assert receipt.links == ((trace_id, send_span.span_id),)
        assert receipt.service == "notifyhub-api" and receipt.trace_id != trace_id
    # The database and Redis are traced too, in the same trace.
    assert any(s.attributes.get("db.system") == "postgresql" for s in spans), spans
    assert any(s.attributes.get("db.system") == "redis" for s in spans), spans


def _post_twilio_status(url: str, token: str, params: dict[str, str]) -> None:
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(token).compute_signature(url, params)
    request = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(),
                                     method="POST", headers={"X-Twilio-Signature": signature})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _ancestors(span: Span, by_id: dict[str, Span]) -> list[Span]:
    """The span's parents up to the first one not exported in the trace (nearest first)."""
    chain = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain
