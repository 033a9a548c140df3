"""OpenTelemetry traces, configured only through the standard `OTEL_*` variables and off unless
an exporter is configured (docs/operations.md, "Traces").

`configure(default_service_name)` runs once in each process that handles work, after any fork:
the web process (notifyhub/wsgi.py, asgi.py; gunicorn's workers import wsgi.py after they fork;
with `preload_app` the master sets up and its workers inherit it) and each Celery worker process
(celery_app.py, `worker_process_init`: a prefork child needs its own TracerProvider, whose
export thread is its own). Off, it returns before importing anything from OpenTelemetry.

On, it sets a TracerProvider (resource from OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES,
sampler from OTEL_TRACES_SAMPLER, batching from OTEL_BSP_*), its exporters (OTEL_TRACES_EXPORTER:
`otlp`, OTLP over HTTP/protobuf to OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT with its headers and
timeout, and/or `console`), and the official instrumentations: Django (the request's span; it
honours a client's W3C `traceparent`), Celery (publish and run spans; the context travels in
the task message's headers), psycopg, Redis, and the HTTP clients the provider SDKs use
(requests: Twilio, Vonage, FCM/google-auth; urllib: SendGrid's python-http-client; urllib3: the
client webhooks' pinned pool; httpx)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

logger = logging.getLogger(__name__)

EXPORTERS = ("otlp", "console")


def exporters_from_env(env: os._Environ[str] | dict[str, str] | None = None) -> list[str]:
    """The span exporters the environment asks for; empty means tracing is off.

    OTEL_TRACES_EXPORTER names them (comma-separated; `none` is off). Unset, an OTLP endpoint
    (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) turns `otlp` on;
    without one nothing is exported, so nothing is set up. OTEL_SDK_DISABLED=true wins."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not names:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint else []
    chosen = [name.strip() for name in names.split(",") if name.strip() and name.strip() != "none"]
    unknown = [name for name in chosen if name not in EXPORTERS]
    if unknown:
        logger.warning("OTEL_TRACES_EXPORTER: %s not supported (supported: %s); ignored",
                       ",".join(unknown), ",".join(EXPORTERS))
    return [name for name in chosen if name in EXPORTERS]


def configure(default_service_name: str) -> bool:
    """Sets up tracing in this process if an exporter is configured; True if it is on.

    Idempotent; a child forked before its parent set up sets up its own. `default_service_name` is the
    service.name unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES gives one."""
    global _ON
    exporters = exporters_from_env()
    if not exporters:
        return False

    from opentelemetry import trace

    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # Set up already: in this process, or in a parent that forked it after setting up
        # (gunicorn's `preload_app`), whose batch processor restarts its export thread in the
        # child (the SDK's at-fork hook) and whose instrumentations are inherited.
        _ON = True
        return True
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    attributes: dict[str, str] = {}
    if not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in os.environ.get(
            "OTEL_RESOURCE_ATTRIBUTES", ""):
        attributes["service.name"] = default_service_name
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in exporters:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _instrument()
    _ON = True
    return True


def _instrument() -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.instrumentation.urllib import URLLibInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

    # Each is a no-op if this process was already instrumented (a child of a traced parent).
    # Django's inserts its middleware into settings.MIDDLEWARE: before the WSGI handler loads.
    for instrumentor in (DjangoInstrumentor(), CeleryInstrumentor(), PsycopgInstrumentor(),
                         RedisInstrumentor(), RequestsInstrumentor(), URLLibInstrumentor(),
                         URLLib3Instrumentor(), HTTPXClientInstrumentor()):
        instrumentor.instrument()  # type: ignore[no-untyped-call]


# --- Spans of our own (no cost when tracing is off) -------------------------------------------

_ON = False


def enabled() -> bool:
    """Whether this process traces (configure() set it up)."""
    return _ON


@contextlib.contextmanager
def send_span(name: str, attributes: dict[str, Any] | None = None) -> Iterator[str]:
    """A span around one provider send, as a child of the current one; yields its W3C
    `traceparent`, which the delivery attempt stores so that the receipt's span can link to
    it. Off: yields "" and imports nothing."""
    if not _ON:
        yield ""
        return
    from opentelemetry import trace

    tracer = trace.get_tracer("notifyhub")
    with tracer.start_as_current_span(name, kind=trace.SpanKind.INTERNAL,
                                      attributes=attributes or {}) as span:
        yield traceparent_of(span.get_span_context())


def traceparent_of(context: Any) -> str:
    if not context.is_valid:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def _span_context(traceparent: str) -> Any:
    from opentelemetry.trace import SpanContext, TraceFlags

    try:
        version, trace_id, span_id, flags = traceparent.split("-")
        context = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                              trace_flags=TraceFlags(int(flags, 16)))
    except (ValueError, AttributeError):
        return None
    return context if context.is_valid and version == "00" else None


@contextlib.contextmanager
def linked_span(name: str, traceparents: Iterable[str],
                attributes: dict[str, Any] | None = None) -> Iterator[None]:
    """A span (child of the current one) linked to the spans these `traceparent`s name: e.g.
    a provider's receipt, processed in its own request, linked to the sends it reports on.
    Off: does nothing."""
    if not _ON:
        yield
        return
    from opentelemetry import trace
    from opentelemetry.trace import Link

    links = [Link(c) for c in map(_span_context, dict.fromkeys(traceparents)) if c is not None]
    with trace.get_tracer("notifyhub").start_as_current_span(name, links=links,
                                                             attributes=attributes or {}):
        yield


def _no_status(status: int) -> None:
    return None


@contextlib.contextmanager
def http_client_span(method: str, url: str) -> Iterator[Callable[[int], None]]:
    """An HTTP client span (semantic conventions: `http.request.method`, `server.address`,
    `server.port`, `url.full`, `http.response.status_code`, `error.type`) for a call no
    instrumentation sees (providers/keepalive.py's http.client connections). Yields the
    function that records the answer's status. Off: does nothing and imports nothing."""
    if not _ON:
        yield _no_status
        return
    from urllib.parse import urlsplit

    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    parts = urlsplit(url)
    attributes: dict[str, Any] = {
        "http.request.method": method, "server.address": parts.hostname or "",
        "server.port": parts.port or (443 if parts.scheme == "https" else 80),
        "url.full": f"{parts.scheme}://{parts.netloc}{parts.path}",  # no query: may carry data
    }
    with trace.get_tracer("notifyhub").start_as_current_span(
            method, kind=SpanKind.CLIENT, attributes=attributes,
            set_status_on_exception=False) as span:

        answered: list[int] = []

        def status(code: int) -> None:
            answered.append(code)
            span.set_attribute("http.response.status_code", code)
            if code >= 400:
                span.set_attribute("error.type", str(code))
                span.set_status(Status(StatusCode.ERROR))

        try:
            yield status
        except BaseException as exc:
            if not answered:  # no answer: the exception is the error
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR))
            raise
