"""A deliberately naive pipeline: the baseline the real one is measured against.

Same models, same rendering, same SendGrid provider and the same Celery app as the real
pipeline, but written the way a first version usually is:

* accept: one ORM statement per row — every inline recipient with `update_or_create`, then the
  Notification, then each Delivery and its `accepted` DeliveryEvent with `objects.create()`;
  after the commit, one Celery task per delivery.
* send (`naive_send_task`, one delivery per task): get the delivery, set `sending` + save,
  render with the worker's `render_for_channel` (lazy per-row reads of notification, template
  version, recipient and client), call `SendGridProvider().send(...)` directly (no provider
  gate: no rate limit, no circuit breaker), save the outcome and create its DeliveryEvent row.

The task runs in one transaction holding the delivery's row lock (`select_for_update`) across
the provider call. That is naive (a lock held during network I/O) but correct: a provider
receipt for the same delivery waits for the commit instead of being overwritten by the task's
later `save()` of `sent`, so every delivery does end `delivered`. There are no retries: an
outcome other than `sent` ends the delivery `failed`.

Imported by the benchmark process and by the worker (`celery ... --include bench.naive`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from apps.clients.models import Client
from apps.core.queues import Priority
from apps.notifications.dispatch import build_message
from apps.notifications.models import (
    CLAIMABLE,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Notification,
    NotificationStatus,
)
from apps.notifications.providers.base import OutboundMessage, Outcome, SendResult
from apps.notifications.providers.sendgrid.send import SendGridProvider
from apps.recipients.models import Recipient
from apps.recipients.services import RECIPIENT_FIELDS
from apps.templates.rendering import RenderError
from apps.templates.selectors import template_get_for_send

NAIVE_TASK_NAME = "bench.naive_send_task"


def naive_accept(
    *,
    client: Client,
    recipients: Sequence[Mapping[str, Any]],
    template_id: str,
    variables: dict[str, Any] | None = None,
    priority: str = "normal",
) -> Notification:
    """Accepts a send of inline recipients with one statement per row; publishes one task per
    delivery after the commit. Returns the notification."""
    template = template_get_for_send(client=client, template_ref=template_id)
    version = template.active_version
    assert version is not None  # template_get_for_send guarantees it
    channels = list(template.channels)
    queue = Priority(priority).queue.value
    with transaction.atomic():
        resolved: dict[str, Recipient] = {}
        for item in recipients:
            external_id = str(item["id"])
            if external_id in resolved:
                continue
            defaults = {k: v for k, v in item.items() if k in RECIPIENT_FIELDS}
            resolved[external_id], _ = Recipient.objects.update_or_create(
                client=client, external_id=external_id, defaults=defaults
            )
        notification = Notification.objects.create(
            client=client,
            template_version=version,
            variables=variables or {},
            channels=channels,
            priority=priority,
            category=template.category,
            status=NotificationStatus.PENDING,
            recipient_count=len(resolved),
        )
        delivery_ids: list[str] = []
        for recipient in resolved.values():
            for channel in channels:
                delivery = Delivery.objects.create(
                    notification=notification,
                    client=client,
                    recipient=recipient,
                    channel=channel,
                    priority=priority,
                    status=DeliveryStatus.PENDING,
                    address=recipient.address_for(channel),
                )
                DeliveryEvent.objects.create(
                    delivery=delivery, status=DeliveryStatus.PENDING, event="accepted",
                    occurred_at=timezone.now(),
                )
                delivery_ids.append(str(delivery.id))

        def publish() -> None:
            for delivery_id in delivery_ids:
                naive_send_task.apply_async(args=[delivery_id], queue=queue)

        transaction.on_commit(publish)
    return notification


def _render(delivery: Delivery) -> OutboundMessage:
    """The worker's rendering, reached through lazy per-row reads of the notification, its
    template version, the recipient and the client (no select_related: that is the point)."""
    return build_message(delivery, {})


@shared_task(name=NAIVE_TASK_NAME, acks_late=True, ignore_result=True)
def naive_send_task(delivery_id: str) -> str:
    """Sends one delivery, row by row. Returns its final status."""
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(id=delivery_id)
        if delivery.status not in CLAIMABLE:
            return str(delivery.status)
        delivery.status = DeliveryStatus.SENDING
        delivery.attempts += 1
        delivery.save()
        DeliveryEvent.objects.create(
            delivery=delivery, status=DeliveryStatus.SENDING, event="claimed",
            detail={"attempt": delivery.attempts}, occurred_at=timezone.now(),
        )

        try:
            message = _render(delivery)
        except RenderError as exc:
            result = SendResult.permanent("", "render_error", str(exc))
        else:
            result = SendGridProvider().send(message)

        now = timezone.now()
        delivery.provider = result.provider
        delivery.provider_message_id = result.provider_message_id
        delivery.error_code = result.error_code
        delivery.error_message = result.error_message[:2000]
        if result.outcome == Outcome.SENT:
            delivery.status, event = DeliveryStatus.SENT, "sent"
            delivery.sent_at = now
        else:
            delivery.status, event = DeliveryStatus.FAILED, "failed"
            delivery.completed_at = now
        delivery.save()
        DeliveryEvent.objects.create(
            delivery=delivery, status=delivery.status, event=event, provider=result.provider,
            provider_message_id=result.provider_message_id, error_code=result.error_code,
            error_message=result.error_message[:2000], detail={"attempt": delivery.attempts},
            occurred_at=now,
        )
    return str(delivery.status)
