"""Sending messages: signed per Standard Webhooks, every attempt logged, retried on the fixed
schedule (computed from a fixed `now`, nothing sleeps), 410 and five failing days disable the
endpoint, redirects are not followed, the relay sweeper picks up what the queue lost."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import current_app
from django.utils import timezone

from apps.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from apps.webhooks.outbound import delivery
from apps.webhooks.outbound.delivery import (
    next_attempt_at,
    webhook_attempt_record,
    webhook_message_claim,
    webhook_messages_deliver,
)
from apps.webhooks.outbound.relay import webhook_messages_relay
from apps.webhooks.outbound.services import webhook_endpoint_test
from apps.webhooks.outbound.transport import HttpResult
from tests.sandbox.receiver import HttpReceiver

from .support import Published, Redirector, make_endpoint, record_sent, send, verified

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)
SCHEDULE = [timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
            timedelta(hours=5), timedelta(hours=10), timedelta(hours=10)]
FAILED_503 = HttpResult(status_code=503, duration_ms=12, error_code="http_503",
                        error="The endpoint answered 503.")
# A failure of the message, not of the endpoint (the endpoint answers): its own schedule.
REFUSED_422 = HttpResult(status_code=422, duration_ms=12, error_code="http_422",
                         error="The endpoint answered 422.")


def test_a_delivery_event_arrives_signed_and_verifies_with_standardwebhooks(
    client_tenant: Any, email_template: Any, endpoint: WebhookEndpoint, receiver: HttpReceiver,
) -> None:
    delivery_row = send(client_tenant, recipient="ada")
    record_sent(delivery_row, "SG-1")
    message = WebhookMessage.objects.get(event_type="delivery.sent")

    report = webhook_messages_deliver(message_ids=[str(message.id)])

    assert report.succeeded == 1
    [request] = receiver.wait_for(1)
    assert request.path == "/hooks"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["webhook-id"] == str(message.id)
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    assert request.headers["webhook-signature"].startswith("v1,")
    payload = verified(endpoint.secret, request)
    assert payload["type"] == "delivery.sent"
    assert payload["data"]["delivery_id"] == str(delivery_row.id)
    assert payload["data"]["recipient"] == "ada"
    message.refresh_from_db()
    assert (message.status, message.attempts, message.last_status_code) == ("succeeded", 1, 200)
    [attempt] = WebhookAttempt.objects.all()
    assert (attempt.status_code, attempt.succeeded, attempt.error_code) == (200, True, "")


def test_a_tampered_body_does_not_verify(endpoint: WebhookEndpoint, receiver: HttpReceiver) -> None:
    message = webhook_endpoint_test(endpoint=endpoint)
    webhook_messages_deliver(message_ids=[str(message.id)])
    [request] = receiver.wait_for(1)
    request.body = request.body.replace(b"webhook.test", b"webhook.tost")
    with pytest.raises(Exception, match="No matching signature"):
        verified(endpoint.secret, request)


def test_the_retry_schedule() -> None:
    due = [next_attempt_at(attempt=n, now=NOW) for n in range(1, 9)]
    assert due == [NOW + d for d in SCHEDULE] + [None]


def test_a_message_the_endpoint_refuses_is_retried_on_the_schedule_then_fails(
    endpoint: WebhookEndpoint, settings: Any,
) -> None:
    """Eight attempts (immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), each at the
    time the previous one set; short waits are task countdowns, long ones the sweeper's. (A 4xx
    is the message's problem; an endpoint that does not answer is backed off as a whole:
    test_endpoint_backoff.py.)"""
    settings.WEBHOOKS_DISABLE_AFTER_FAILING_SECONDS = 10 * 86400
    message = webhook_endpoint_test(endpoint=endpoint, now=NOW)
    now = NOW
    for number, wait in enumerate([*SCHEDULE, None], start=1):
        assert webhook_message_claim(message_id=str(message.id), now=now - timedelta(seconds=2)) is None
        assert webhook_message_claim(message_id=str(message.id), now=now) == number
        endpoint.refresh_from_db()
        outcome = webhook_attempt_record(message=message, endpoint=endpoint, attempt=number,
                                         result=REFUSED_422, now=now)
        message.refresh_from_db()
        if wait is None:
            assert (outcome.status, message.status, message.next_attempt_at) == ("failed", "failed", None)
            break
        assert outcome.status == "pending" and message.status == "pending"
        assert message.next_attempt_at == now + wait
        if wait.total_seconds() <= settings.WEBHOOKS_MAX_COUNTDOWN_SECONDS:
            assert outcome.countdown == wait.total_seconds()
            assert message.lease_until == now + wait + timedelta(
                seconds=settings.WEBHOOKS_REQUEUE_AFTER_SECONDS)
        else:  # too long for a broker countdown: the sweeper publishes it when due
            assert outcome.countdown is None
            assert message.lease_until == now + wait
        now += wait
    attempts = list(WebhookAttempt.objects.filter(message=message).order_by("id"))
    assert [a.attempt for a in attempts] == list(range(1, 9))
    assert {(a.status_code, a.error_code) for a in attempts} == {(422, "http_422")}
    endpoint.refresh_from_db()
    assert endpoint.failing_since == NOW and endpoint.disabled_at is None
    assert endpoint.next_probe_at is None  # the endpoint answers: not backed off


def test_a_short_retry_is_published_with_its_countdown(
    endpoint: WebhookEndpoint, receiver: HttpReceiver, published: Published,
) -> None:
    receiver.responder = lambda request: (422, "text/plain", b"bad")
    message = webhook_endpoint_test(endpoint=endpoint)

    report = webhook_messages_deliver(message_ids=[str(message.id)])

    assert report.retrying == 1
    assert published == [([str(message.id)], 5.0)]
    assert published.probes == []
    [attempt] = WebhookAttempt.objects.all()
    assert (attempt.status_code, attempt.error_code, attempt.response_body) == (422, "http_422", "bad")
    message.refresh_from_db()
    assert message.last_error == "The endpoint answered 422."


def test_a_5xx_backs_the_endpoint_off_and_publishes_its_probe_not_the_message(
    endpoint: WebhookEndpoint, receiver: HttpReceiver, published: Published,
) -> None:
    receiver.responder = lambda request: (500, "text/plain", b"boom")
    message = webhook_endpoint_test(endpoint=endpoint)

    report = webhook_messages_deliver(message_ids=[str(message.id)])

    assert report.retrying == 1
    assert published == []
    [(probed, countdown)] = published.probes
    assert probed == str(endpoint.id) and countdown is not None and 4 < countdown <= 5
    [attempt] = WebhookAttempt.objects.all()
    assert (attempt.status_code, attempt.error_code, attempt.response_body) == (500, "http_500", "boom")
    message.refresh_from_db()
    assert message.last_error == "The endpoint answered 500."
    assert (message.status, message.lease_until) == ("pending", None)  # parked
    endpoint.refresh_from_db()
    assert endpoint.next_probe_at is not None and endpoint.probe_failures == 1


def test_410_disables_the_endpoint_at_once(
    endpoint: WebhookEndpoint, receiver: HttpReceiver,
) -> None:
    receiver.responder = lambda request: (410, "text/plain", b"gone")
    first = webhook_endpoint_test(endpoint=endpoint)
    second = webhook_endpoint_test(endpoint=endpoint)

    report = webhook_messages_deliver(message_ids=[str(first.id), str(second.id)])

    assert (report.claimed, report.failed) == (1, 1)  # the second is not tried
    assert len(receiver.snapshot()) == 1
    endpoint.refresh_from_db()
    assert endpoint.disabled_at is not None and "410" in endpoint.disabled_reason
    assert set(WebhookMessage.objects.values_list("status", flat=True)) == {"failed"}


def test_an_endpoint_failing_for_five_days_is_disabled(
    endpoint: WebhookEndpoint, caplog: pytest.LogCaptureFixture,
) -> None:
    WebhookEndpoint.objects.filter(id=endpoint.id).update(failing_since=NOW - timedelta(days=5))
    endpoint.refresh_from_db()
    message = webhook_endpoint_test(endpoint=endpoint, now=NOW)
    attempt = webhook_message_claim(message_id=str(message.id), now=NOW)
    assert attempt == 1

    outcome = webhook_attempt_record(message=message, endpoint=endpoint, attempt=attempt,
                                     result=FAILED_503, now=NOW)

    assert outcome.endpoint_disabled
    endpoint.refresh_from_db()
    assert endpoint.disabled_at == NOW
    assert endpoint.disabled_reason.startswith("Every attempt failed for 5 days")
    assert "disabled" in caplog.text
    message.refresh_from_db()
    assert message.status == "failed"


def test_four_days_of_failure_is_not_enough_and_a_success_resets_the_streak(
    endpoint: WebhookEndpoint,
) -> None:
    WebhookEndpoint.objects.filter(id=endpoint.id).update(failing_since=NOW - timedelta(days=4))
    endpoint.refresh_from_db()
    message = webhook_endpoint_test(endpoint=endpoint, now=NOW)
    attempt = webhook_message_claim(message_id=str(message.id), now=NOW)
    assert attempt is not None
    assert not webhook_attempt_record(message=message, endpoint=endpoint, attempt=attempt,
                                      result=FAILED_503, now=NOW).endpoint_disabled
    later = NOW + timedelta(seconds=5)
    attempt = webhook_message_claim(message_id=str(message.id), now=later)
    assert attempt is None  # backed off: only the endpoint's probe may send
    attempt = webhook_message_claim(message_id=str(message.id), now=later, probe=True)
    assert attempt is not None
    webhook_attempt_record(message=message, endpoint=endpoint, attempt=attempt, now=later,
                           result=HttpResult(status_code=204, duration_ms=3))
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None and endpoint.disabled_at is None
    assert (endpoint.next_probe_at, endpoint.probe_failures) == (None, 0)


def test_the_sweeper_disables_an_endpoint_failing_for_five_days_without_new_traffic(
    endpoint: WebhookEndpoint,
) -> None:
    WebhookEndpoint.objects.filter(id=endpoint.id).update(
        failing_since=timezone.now() - timedelta(days=5, seconds=1))
    assert webhook_messages_relay().endpoints_disabled == 1
    endpoint.refresh_from_db()
    assert endpoint.disabled_at is not None


def test_a_redirect_is_not_followed(client_tenant: Any, receiver: HttpReceiver) -> None:
    with Redirector(receiver.url("/elsewhere")) as redirector:
        endpoint = make_endpoint(client_tenant, redirector.url)
        message = webhook_endpoint_test(endpoint=endpoint)
        webhook_messages_deliver(message_ids=[str(message.id)])
    [attempt] = WebhookAttempt.objects.all()
    assert (attempt.status_code, attempt.error_code, attempt.succeeded) == (302, "redirect", False)
    assert "not followed" in attempt.error and "/elsewhere" in attempt.error
    assert receiver.snapshot() == []


def test_a_slow_endpoint_times_out(
    endpoint: WebhookEndpoint, receiver: HttpReceiver, settings: Any,
) -> None:
    settings.WEBHOOKS_TIMEOUT_SECONDS = 0.3

    def slow(request: Any) -> tuple[int, str, bytes]:
        time.sleep(1)
        return 200, "text/plain", b""

    receiver.responder = slow
    message = webhook_endpoint_test(endpoint=endpoint)
    webhook_messages_deliver(message_ids=[str(message.id)])
    [attempt] = WebhookAttempt.objects.all()
    assert (attempt.status_code, attempt.error_code) == (None, "timeout")
    assert attempt.duration_ms < 1000


def test_a_refused_connection_is_logged(client_tenant: Any) -> None:
    endpoint = make_endpoint(client_tenant, "http://127.0.0.1:9/nothing-listens")
    message = webhook_endpoint_test(endpoint=endpoint)
    webhook_messages_deliver(message_ids=[str(message.id)])
    [attempt] = WebhookAttempt.objects.all()
    assert attempt.error_code == "connection_error" and attempt.status_code is None


def test_a_duplicate_task_sends_once(endpoint: WebhookEndpoint, receiver: HttpReceiver) -> None:
    message = webhook_endpoint_test(endpoint=endpoint)
    webhook_messages_deliver(message_ids=[str(message.id)])
    webhook_messages_deliver(message_ids=[str(message.id)])
    assert len(receiver.wait_for(1)) == 1
    assert WebhookAttempt.objects.count() == 1


def test_the_sweeper_publishes_lost_and_due_messages_and_recovers_crashed_attempts(
    endpoint: WebhookEndpoint, published: Published, settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    past = timezone.now() - timedelta(seconds=1)
    lost = webhook_endpoint_test(endpoint=endpoint)
    crashed = webhook_endpoint_test(endpoint=endpoint)
    waiting = webhook_endpoint_test(endpoint=endpoint)
    WebhookMessage.objects.filter(id=lost.id).update(lease_until=past)
    assert webhook_message_claim(message_id=str(crashed.id)) == 1
    WebhookMessage.objects.filter(id=crashed.id).update(lease_until=past)
    WebhookMessage.objects.filter(id=waiting.id).update(
        next_attempt_at=timezone.now() + timedelta(hours=2),
        lease_until=timezone.now() + timedelta(hours=2))

    # The sweeper's task: the sweep returns what to publish, the task publishes it.
    with django_capture_on_commit_callbacks(execute=True):
        report = current_app.tasks["webhooks.webhook_messages_relay_task"]()

    assert (report["published"], report["recovered"]) == (2, 1)
    assert set(published.ids()) == {str(lost.id), str(crashed.id)}
    crashed.refresh_from_db()
    assert (crashed.status, crashed.attempts) == ("pending", 1)
    assert crashed.lease_until is not None and crashed.lease_until > timezone.now()


def test_a_crash_on_the_last_attempt_fails_the_message(endpoint: WebhookEndpoint) -> None:
    message = webhook_endpoint_test(endpoint=endpoint)
    WebhookMessage.objects.filter(id=message.id).update(
        status="sending", attempts=len(delivery.retry_delays()),
        lease_until=timezone.now() - timedelta(seconds=1))
    assert webhook_messages_relay().failed == 1
    message.refresh_from_db()
    assert message.status == "failed" and "stopped" in message.last_error
