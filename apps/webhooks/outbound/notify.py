"""Telling a client that one of its webhook endpoints was disabled: an email to the client's
`notify_email`, sent with Django's mail (EMAIL_HOST/EMAIL_PORT; locally the sandbox's SMTP
server on 2525) by a task on the `webhooks` queue, retried while the mail server is down.

NotifyHub's own pipeline is deliberately not used: a message about NotifyHub failing should not
depend on the client's templates, quota, preferences or NotifyHub's provider gates. The audit
row (`webhook.disable`) and the endpoint's `disabled_at` / `disabled_reason` are the record;
the email is the nudge."""

from __future__ import annotations

import logging
from uuid import UUID

from django.conf import settings
from django.core.mail import send_mail
from urllib3.util import parse_url

from apps.core.queues import Queue
from apps.core.tasks import task_publish

from ..models import WebhookEndpoint

logger = logging.getLogger(__name__)

DISABLED_EMAIL_TASK = "webhooks.webhook_endpoint_disabled_email_task"


def shown_url(url: str) -> str:
    """The URL without credentials, query or fragment (they may carry the client's tokens)."""
    try:
        parsed = parse_url(url)
    except ValueError:
        return "(unreadable URL)"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path or ''}"


def webhook_endpoint_disabled_email(*, endpoint_id: UUID | str) -> bool:
    """Emails the endpoint's client that it is disabled, and why. False (nothing sent) when the
    client has no `notify_email` or the endpoint is enabled again or gone."""
    endpoint = (WebhookEndpoint.objects.select_related("client")
                .filter(id=endpoint_id, disabled_at__isnull=False, deleted_at__isnull=True)
                .first())
    if endpoint is None or not endpoint.client.notify_email:
        return False
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    subject = "NotifyHub disabled one of your webhook endpoints"
    body = (
        f"Hello {endpoint.client.name},\n\n"
        f"NotifyHub stopped sending events to your webhook endpoint\n\n"
        f"  {shown_url(endpoint.url)}\n"
        f"  id: {endpoint.id}\n"
        + (f"  description: {endpoint.description}\n" if endpoint.description else "")
        + f"\nDisabled at {endpoint.disabled_at:%Y-%m-%d %H:%M} UTC. Reason: {endpoint.disabled_reason}\n\n"
        f"Events that were waiting for it were dropped. Once the receiver works again, ask us to\n"
        f"re-enable it and replay what it missed (POST {base}/api/v1/webhooks/{endpoint.id}/replay\n"
        f'with {{"since": "<time>"}}). Its attempts, with the answers we got, are at\n'
        f"GET {base}/api/v1/webhooks/{endpoint.id}/attempts.\n\n"
        f"— NotifyHub\n"
    )
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [endpoint.client.notify_email])
    logger.info("told client %s that webhook endpoint %s is disabled", endpoint.client.slug,
                endpoint.id)
    return True


def webhook_endpoint_disabled_email_enqueue(*, endpoint_id: UUID | str) -> None:
    """Publishes the email task (call it after commit). A broker failure is logged, not
    raised: the disabling itself is recorded either way."""
    try:
        task_publish(DISABLED_EMAIL_TASK, args=[str(endpoint_id)],
                     queue=Queue.WEBHOOKS.value)
    except Exception:
        logger.exception("could not publish the disabled-endpoint email for %s", endpoint_id)
