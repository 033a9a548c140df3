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

import logging
import os

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
    exporters = exporters_from_env()
    if not exporters:
        return False

    from opentelemetry import trace

    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # Set up already: in this process, or in a parent that forked it after setting up
        # (gunicorn's `preload_app`), whose batch processor restarts its export thread in the
        # child (the SDK's at-fork hook) and whose instrumentations are inherited.
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
