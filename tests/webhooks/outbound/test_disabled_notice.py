"""An endpoint disabled after failing for five days (or answering 410): the client is told — an
audit row `webhook.disable` with the reason, an email to the client's `notify_email` (Django's
mail, through the SMTP sandbox locally), and `disabled_at` / `disabled_reason` on the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core import mail

from apps.audit.models import AuditLog
from apps.webhooks.models import WebhookEndpoint
from apps.webhooks.outbound.delivery import webhook_attempt_record, webhook_message_claim
from apps.webhooks.outbound.services import webhook_endpoint_test
from apps.webhooks.outbound.tasks import webhook_endpoint_disabled_email_task
from apps.webhooks.outbound.transport import HttpResult
from tests.factories import ClientFactory, api_key_for

from .support import make_endpoint

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)
FAILED_503 = HttpResult(status_code=503, duration_ms=12, error_code="http_503",
                        error="The endpoint answered 503.")


@pytest.fixture
def emails_published(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    published: list[str] = []
    monkeypatch.setattr(webhook_endpoint_disabled_email_task, "apply_async",
                        lambda *, args, queue: published.append(args[0]) if queue == "webhooks"
                        else None)
    return published


def fail_for_five_days(endpoint: WebhookEndpoint) -> None:
    WebhookEndpoint.objects.filter(id=endpoint.id).update(failing_since=NOW - timedelta(days=5))
    endpoint.refresh_from_db()
    message = webhook_endpoint_test(endpoint=endpoint, now=NOW)
    attempt = webhook_message_claim(message_id=str(message.id), now=NOW)
    assert attempt is not None
    outcome = webhook_attempt_record(message=message, endpoint=endpoint, attempt=attempt,
                                     result=FAILED_503, now=NOW)
    assert outcome.endpoint_disabled


def test_a_disabled_endpoint_is_audited_and_its_client_emailed(
    client_tenant: Any, emails_published: list[str],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client_tenant.notify_email = "ops@example.com"
    client_tenant.save()
    endpoint = make_endpoint(client_tenant, "https://hooks.example.com/in?token=s3cret")

    with django_capture_on_commit_callbacks(execute=True):
        fail_for_five_days(endpoint)

    row = AuditLog.objects.get(action="webhook.disable")
    assert row.client_id == client_tenant.id and row.object_id == str(endpoint.id)
    assert row.changes["reason"].startswith("Every attempt failed for 5 days")
    assert row.changes["client_notified"] is True
    assert emails_published == [str(endpoint.id)]

    assert webhook_endpoint_disabled_email_task.apply(args=[str(endpoint.id)]).get() is True
    [email] = mail.outbox
    assert email.to == ["ops@example.com"]
    assert email.subject == "NotifyHub disabled one of your webhook endpoints"
    assert str(endpoint.id) in email.body
    assert "Every attempt failed for 5 days" in email.body
    assert "https://hooks.example.com/in" in email.body
    assert "s3cret" not in email.body and endpoint.secret not in email.body


def test_the_api_shows_when_and_why_an_endpoint_was_disabled(client_tenant: Any) -> None:
    from rest_framework.test import APIClient

    endpoint = make_endpoint(client_tenant, "https://hooks.example.com/in")
    fail_for_five_days(endpoint)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(client_tenant)}")

    body = api.get(f"/api/v1/webhooks/{endpoint.id}").json()

    assert body["enabled"] is False
    assert body["disabled_at"] == "2026-03-01T09:00:00Z"
    assert body["disabled_reason"].startswith("Every attempt failed for 5 days")
    listed = api.get("/api/v1/webhooks").json()["results"]
    assert listed[0]["disabled_reason"] == body["disabled_reason"]


def test_without_a_notify_email_only_the_audit_row_is_written(
    client_tenant: Any, emails_published: list[str], django_capture_on_commit_callbacks: Any,
) -> None:
    endpoint = make_endpoint(client_tenant, "https://hooks.example.com/in")
    with django_capture_on_commit_callbacks(execute=True):
        fail_for_five_days(endpoint)

    assert AuditLog.objects.get(action="webhook.disable").changes["client_notified"] is False
    assert emails_published == []
    assert webhook_endpoint_disabled_email_task.apply(args=[str(endpoint.id)]).get() is False
    assert mail.outbox == []


def test_no_email_for_an_endpoint_enabled_again_before_the_task_ran(
    client_tenant: Any, emails_published: list[str],
) -> None:
    from apps.webhooks.outbound.services import webhook_endpoint_enable

    client_tenant.notify_email = "ops@example.com"
    client_tenant.save()
    endpoint = make_endpoint(client_tenant, "https://hooks.example.com/in")
    fail_for_five_days(endpoint)
    webhook_endpoint_enable(endpoint_id=endpoint.id)

    assert webhook_endpoint_disabled_email_task.apply(args=[str(endpoint.id)]).get() is False
    assert mail.outbox == []
    assert AuditLog.objects.filter(action="webhook.enable", object_id=str(endpoint.id)).exists()


def test_the_email_goes_through_the_smtp_sandbox(
    clean_sandbox: Any, settings: Any, emails_published: list[str]
) -> None:
    """`make run`'s path: Django's SMTP backend to the sandbox's SMTP server (EMAIL_HOST and
    EMAIL_PORT default to the SMTP provider's)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", clean_sandbox.smtp_port
    tenant = ClientFactory(notify_email="oncall@example.com")
    endpoint = make_endpoint(tenant, "https://hooks.example.com/in")
    fail_for_five_days(endpoint)

    assert webhook_endpoint_disabled_email_task.apply(args=[str(endpoint.id)]).get() is True

    [message] = clean_sandbox.wait_for_messages(1, to="oncall@example.com")
    assert message["subject"] == "NotifyHub disabled one of your webhook endpoints"


def test_webhook_endpoint_changes_through_the_api_are_audited(api: Any, client_tenant: Any) -> None:
    created = api.post("/api/v1/webhooks", {"url": "https://hooks.example.com/in?key=abc"},
                       format="json").json()
    api.post(f"/api/v1/webhooks/{created['id']}/rotate-secret")
    api.delete(f"/api/v1/webhooks/{created['id']}")

    rows = list(AuditLog.objects.filter(object_id=created["id"]).order_by("id"))
    assert [r.action for r in rows] == ["webhook.create", "webhook.rotate_secret", "webhook.delete"]
    assert all(r.client_id == client_tenant.id and r.actor_type == "api_key" for r in rows)
    assert rows[0].changes["url"] == "https://hooks.example.com/in"  # no query (it may hold a key)
