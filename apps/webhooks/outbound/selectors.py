"""Reads for the API and the admin."""

from __future__ import annotations

from uuid import UUID

from django.db.models import F, QuerySet

from apps.clients.models import Client
from apps.core.exceptions import NotFound

from ..models import WebhookAttempt, WebhookEndpoint


def webhook_endpoint_list(*, client: Client) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(client=client, deleted_at__isnull=True)


def webhook_endpoint_get(*, client: Client, endpoint_id: UUID | str) -> WebhookEndpoint:
    """The client's endpoint; another client's, a deleted or an unknown one is 404."""
    endpoint = webhook_endpoint_list(client=client).filter(id=endpoint_id).first()
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


def webhook_attempt_list(
    *, endpoint: WebhookEndpoint, message_id: UUID | None = None,
    succeeded: bool | None = None,
) -> QuerySet[WebhookAttempt]:
    attempts = WebhookAttempt.objects.filter(endpoint=endpoint).annotate(
        event_type=F("message__event_type"))
    if message_id is not None:
        attempts = attempts.filter(message_id=message_id)
    if succeeded is not None:
        attempts = attempts.filter(succeeded=succeeded)
    return attempts
