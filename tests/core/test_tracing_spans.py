"""NotifyHub's own spans (apps/core/tracing.py), in-process with an in-memory exporter: the
SendGrid call on the keep-alive http.client path gets an HTTP client span (semantic
conventions), a send's span is stored with its attempt, and the receipt's span links to it.
Off, none of it happens (and nothing of OpenTelemetry is imported: tests/core/test_tracing.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from apps.core import tracing
from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import DeliveryEvent
from apps.notifications.providers.base import OutboundMessage, Outcome
from apps.notifications.providers.registry import get_provider
from apps.notifications.receipts import ProviderEvent, delivery_receipts_apply
from apps.notifications.services import notification_send

_EXPORTER = InMemorySpanExporter()

EMAIL = OutboundMessage(delivery_id="d-1", notification_id="n-1", client_id="c-1",
                        channel="email", to="ada@example.com", subject="Hi", text="Hello")


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, spans kept in memory."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    monkeypatch.setattr(tracing, "_ON", True)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def test_the_sendgrid_call_has_an_http_client_span(clean_sandbox: Any,
                                                   spans: InMemorySpanExporter) -> None:
    result = get_provider("sendgrid").send(EMAIL)
    assert result.outcome == Outcome.SENT
    [span] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert span.name == "POST"
    host, port = clean_sandbox.url.split("//")[1].split(":")
    assert dict(span.attributes or {}) == {
        "http.request.method": "POST", "server.address": host, "server.port": int(port),
        "url.full": f"{clean_sandbox.url}/v3/mail/send", "http.response.status_code": 202}


def test_a_refused_sendgrid_call_is_an_error_span(clean_sandbox: Any,
                                                  spans: InMemorySpanExporter) -> None:
    clean_sandbox.control(fail_next=1, fail_status=503)
    assert get_provider("sendgrid").send(EMAIL).outcome == Outcome.RETRYABLE
    [span] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert (span.attributes or {})["http.response.status_code"] == 503
    assert (span.attributes or {})["error.type"] == "503"
    assert not span.status.is_ok


def test_off_there_is_no_span(clean_sandbox: Any, spans: InMemorySpanExporter,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_ON", False)
    get_provider("sendgrid").send(EMAIL)
    assert spans.get_finished_spans() == ()


@pytest.mark.django_db(transaction=True)
def test_the_receipts_span_links_to_the_span_of_the_send(
    client_tenant: Any, email_template: Any, clean_sandbox: Any, spans: InMemorySpanExporter,
    settings: Any,
) -> None:
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:9"  # the sandbox's own receipts go nowhere
    delivery = notification_send(
        client=client_tenant, template_id="welcome", variables={"name": "Ada"},
        recipients=[{"id": "ada", "email": "ada@example.com"}]).notification.deliveries.get()
    deliveries_dispatch(delivery_ids=[str(delivery.id)])
    [send] = [s for s in spans.get_finished_spans() if s.name == "send sendgrid"
              and (s.attributes or {}).get("notifyhub.delivery_id") == str(delivery.id)]
    sent = DeliveryEvent.objects.get(delivery=delivery, event="sent")
    context = send.get_span_context()
    assert sent.detail["traceparent"] == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}")
    delivery.refresh_from_db()

    delivery_receipts_apply(events=[ProviderEvent(
        provider="sendgrid", event="delivered", status="delivered",  # type: ignore[arg-type]
        occurred_at=sent.occurred_at, provider_message_id=delivery.provider_message_id,
        provider_event_id="evt-1")])

    # (Another test's receipts, e.g. a callback of its sandbox reaching a live server thread
    # late, may have a span of their own: this receipt's span is the one in our send's trace.)
    [receipt] = [s for s in spans.get_finished_spans() if s.name == "delivery_receipts_apply"
                 and any(link.context.trace_id == context.trace_id for link in s.links)]
    assert [(link.context.trace_id, link.context.span_id) for link in receipt.links] == [
        (context.trace_id, context.span_id)]
