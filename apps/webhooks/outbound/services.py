"""Endpoint services: create, delete, rotate the secret, disable and re-enable, send a test
event, replay messages. Each one that changes who listens drops the subscriptions cache, and
each change writes its `webhook.*` audit row in its transaction (never a secret, nor the
URL's query string, which may carry a receiver's token)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from urllib3.util import parse_url

from apps.audit.services import Entry, audit_record, audit_records
from apps.clients.models import Client
from apps.core.correlation import current_request_id
from apps.core.exceptions import ApplicationError, Conflict, NotFound

from ..models import WebhookEndpoint, WebhookMessage, WebhookMessageStatus
from .events import WEBHOOK_TEST
from .notify import shown_url, webhook_endpoint_disabled_email_enqueue
from .outbox import subscriptions_changed
from .publish import webhook_messages_enqueue_on_commit
from .signing import secret_generate
from .ssrf import url_host_refusal

logger = logging.getLogger(__name__)


def _audit(action: str, endpoint: WebhookEndpoint, **changes: object) -> None:
    audit_record(action=action, client=endpoint.client_id, object_type="webhook_endpoint",
                 object_id=endpoint.pk, changes={"url": shown_url(endpoint.url), **changes})


def webhook_url_problem(url: str) -> str | None:
    """Why this URL cannot be an endpoint, or None. Literal addresses are checked against the
    network guard now; host names are checked at every connect."""
    try:
        parsed = parse_url(url)
    except ValueError:
        return "Not a valid URL."
    if (parsed.scheme or "").lower() not in ("http", "https") or not parsed.host:
        return "Use an absolute http or https URL."
    if parsed.auth:
        return "Credentials in the URL are not supported; verify our signature instead."
    reason = url_host_refusal(parsed.host)
    if reason:
        return f"This address is not allowed: {reason}."
    return None


@transaction.atomic
def webhook_endpoint_create(
    *, client: Client, url: str, event_types: Sequence[str] = (), description: str = "",
) -> WebhookEndpoint:
    """A new endpoint with a new secret (the caller shows `endpoint.secret` once)."""
    problem = webhook_url_problem(url)
    if problem:
        raise ApplicationError(problem, code="invalid", status_code=400, fields={"url": [problem]})
    Client.objects.select_for_update().filter(id=client.id).first()  # serializes the count
    count = WebhookEndpoint.objects.filter(client=client, deleted_at__isnull=True).count()
    if count >= settings.WEBHOOKS_MAX_ENDPOINTS_PER_CLIENT:
        raise ApplicationError(
            f"At most {settings.WEBHOOKS_MAX_ENDPOINTS_PER_CLIENT} webhook endpoints per client.",
            code="too_many_endpoints")
    endpoint = WebhookEndpoint.objects.create(
        client=client, url=url, description=description,
        event_types=sorted(set(event_types)), secret=secret_generate(),
    )
    _audit("webhook.create", endpoint, event_types=endpoint.event_types,
           description=endpoint.description)
    subscriptions_changed()
    return endpoint


def _fail_pending(endpoint_id: UUID, reason: str, now: datetime) -> int:
    return WebhookMessage.objects.filter(
        endpoint_id=endpoint_id, status=WebhookMessageStatus.PENDING,
    ).update(status=WebhookMessageStatus.FAILED, next_attempt_at=None, lease_until=None,
             last_error=reason[:500], updated_at=now)


@transaction.atomic
def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, now: datetime | None = None) -> None:
    """Stops sending to the endpoint and forgets its secrets; its message and attempt history
    stays (for the admin) until the rows are purged."""
    now = now or timezone.now()
    deleted = WebhookEndpoint.objects.filter(id=endpoint.id, deleted_at__isnull=True).update(
        deleted_at=now, secret="", previous_secret="", previous_secret_expires_at=None,
        updated_at=now)
    failed = _fail_pending(endpoint.id, "The endpoint was deleted.", now)
    if deleted:
        _audit("webhook.delete", endpoint, dropped_messages=failed)
    subscriptions_changed()


@transaction.atomic
def webhook_endpoint_rotate_secret(
    *, endpoint: WebhookEndpoint, now: datetime | None = None,
) -> WebhookEndpoint:
    """A new secret; the old one keeps signing (a second signature) for
    WEBHOOKS_SECRET_ROTATION_OVERLAP_SECONDS (24 h). Rotating again within that window drops
    the oldest secret."""
    now = now or timezone.now()
    locked = WebhookEndpoint.objects.select_for_update().get(id=endpoint.id)
    locked.previous_secret = locked.secret
    locked.previous_secret_expires_at = now + timedelta(
        seconds=settings.WEBHOOKS_SECRET_ROTATION_OVERLAP_SECONDS)
    locked.secret = secret_generate()
    locked.updated_at = now
    locked.save(update_fields=["previous_secret", "previous_secret_expires_at", "secret", "updated_at"])
    _audit("webhook.rotate_secret", locked,
           previous_secret_expires_at=locked.previous_secret_expires_at)
    return locked


@transaction.atomic
def webhook_endpoint_disable(*, endpoint_id: UUID, reason: str, now: datetime | None = None) -> bool:
    """Disables an endpoint (410 Gone, failing for days, or by hand): records when and why
    (`disabled_at`, `disabled_reason`, an audit row `webhook.disable`), fails its pending
    messages, logs it and, after commit, emails the client's `notify_email` if it has one.
    False if it was already disabled."""
    now = now or timezone.now()
    changed = WebhookEndpoint.objects.filter(id=endpoint_id, disabled_at__isnull=True).update(
        disabled_at=now, disabled_reason=reason[:300], updated_at=now)
    if not changed:
        return False
    failed = _fail_pending(endpoint_id, f"The endpoint was disabled: {reason}", now)
    endpoint = WebhookEndpoint.objects.select_related("client").get(id=endpoint_id)
    _audit("webhook.disable", endpoint, reason=endpoint.disabled_reason[:300],
           failing_since=endpoint.failing_since, failed_messages=failed,
           client_notified=bool(endpoint.client.notify_email))
    logger.warning("webhook endpoint %s of client %s disabled: %s; %d pending messages failed",
                   endpoint.id, endpoint.client.slug, reason, failed)
    if endpoint.client.notify_email:
        transaction.on_commit(lambda: webhook_endpoint_disabled_email_enqueue(endpoint_id=endpoint_id))
    subscriptions_changed()
    return True


@transaction.atomic
def webhook_endpoint_enable(*, endpoint_id: UUID, now: datetime | None = None) -> bool:
    """Re-enables a disabled endpoint with a clean failure streak (replay what it missed)."""
    now = now or timezone.now()
    changed = WebhookEndpoint.objects.filter(
        id=endpoint_id, disabled_at__isnull=False, deleted_at__isnull=True,
    ).update(disabled_at=None, disabled_reason="", failing_since=None, next_probe_at=None,
             probe_failures=0, updated_at=now)
    if changed:
        _audit("webhook.enable", WebhookEndpoint.objects.get(id=endpoint_id))
        subscriptions_changed()
    return bool(changed)


def _require_enabled(endpoint: WebhookEndpoint) -> None:
    if endpoint.disabled_at is not None:
        raise Conflict(f"The endpoint is disabled ({endpoint.disabled_reason}).",
                       code="endpoint_disabled")


@transaction.atomic
def webhook_endpoint_test(*, endpoint: WebhookEndpoint, now: datetime | None = None) -> WebhookMessage:
    """Queues a `webhook.test` event to the endpoint, whatever it subscribes to."""
    _require_enabled(endpoint)
    now = now or timezone.now()
    message = WebhookMessage.objects.create(
        endpoint=endpoint, event_type=WEBHOOK_TEST,
        payload={"type": WEBHOOK_TEST, "timestamp": now.isoformat(),
                 "data": {"endpoint_id": str(endpoint.id),
                          "message": "A test event from NotifyHub."}},
        next_attempt_at=now,
        lease_until=now + timedelta(seconds=settings.WEBHOOKS_REQUEUE_AFTER_SECONDS),
        request_id=current_request_id(),
    )
    _audit("webhook.test", endpoint, message_id=message.id)
    webhook_messages_enqueue_on_commit(items=[(str(message.id), str(endpoint.id))])
    return message


@transaction.atomic
def webhook_messages_replay(
    *, endpoint: WebhookEndpoint, message_id: UUID | str | None = None,
    since: datetime | None = None, limit: int | None = None, now: datetime | None = None,
) -> int:
    """Sends messages again, with a fresh retry schedule and the same `webhook-id` (receivers
    de-duplicate on it): one message, or every message created since a time (oldest first, at
    most WEBHOOKS_REPLAY_LIMIT). A message being sent right now is left alone."""
    _require_enabled(endpoint)
    now = now or timezone.now()
    messages = WebhookMessage.objects.filter(endpoint=endpoint)
    if message_id is not None:
        messages = messages.filter(id=message_id)
        status = messages.values_list("status", flat=True).first()
        if status is None:
            raise NotFound("No such message for this endpoint.")
        if status == WebhookMessageStatus.SENDING:
            raise Conflict("The message is being sent right now.", code="message_in_flight")
    elif since is not None:
        messages = messages.filter(created_at__gte=since)
    else:
        raise ApplicationError("Give message_id or since.", code="invalid", status_code=400)
    rows = _replay(messages, limit=limit or settings.WEBHOOKS_REPLAY_LIMIT, now=now)
    if rows:
        _audit("webhook.replay", endpoint, replayed=len(rows), message_id=message_id, since=since,
               message_ids=[m for m, _ in rows])
    return len(rows)


def _replay(messages: QuerySet[WebhookMessage], *, limit: int, now: datetime) -> list[tuple[UUID, UUID]]:
    rows = list(
        messages.exclude(status=WebhookMessageStatus.SENDING)
        .select_for_update(skip_locked=True, of=("self",)).order_by("created_at", "id")
        .values_list("id", "endpoint_id")[:limit]
    )
    if not rows:
        return []
    WebhookMessage.objects.filter(id__in=[r[0] for r in rows]).update(
        status=WebhookMessageStatus.PENDING, attempts=0, next_attempt_at=now, succeeded_at=None,
        lease_until=now + timedelta(seconds=settings.WEBHOOKS_REQUEUE_AFTER_SECONDS),
        last_error="", updated_at=now)
    webhook_messages_enqueue_on_commit(items=[(str(m), str(e)) for m, e in rows])
    return rows


@transaction.atomic
def webhook_messages_replay_selected(
    *, message_ids: Sequence[UUID | str], now: datetime | None = None,
) -> int:
    """The admin's replay: these messages, where their endpoint is enabled."""
    messages = WebhookMessage.objects.filter(
        id__in=list(message_ids), endpoint__disabled_at__isnull=True,
        endpoint__deleted_at__isnull=True)
    rows = _replay(messages, limit=settings.WEBHOOKS_REPLAY_LIMIT, now=now or timezone.now())
    by_endpoint: dict[UUID, list[UUID]] = {}
    for message_id, endpoint_id in rows:
        by_endpoint.setdefault(endpoint_id, []).append(message_id)
    endpoints = WebhookEndpoint.objects.in_bulk(list(by_endpoint))
    audit_records([
        Entry(action="webhook.replay", client=endpoint.client_id, object_type="webhook_endpoint",
              object_id=endpoint.pk, changes={"url": shown_url(endpoint.url),
                                              "replayed": len(ids), "message_ids": ids})
        for endpoint_id, ids in by_endpoint.items() if (endpoint := endpoints.get(endpoint_id))
    ])
    return len(rows)
