"""Celery tasks: thin wrappers that take ids and call a service. Deliveries run on the
`webhooks` queue; the sweeper on `maintenance` (celery_app.py routes both)."""

from __future__ import annotations

import smtplib

from celery import shared_task

from apps.core.queues import Queue
from apps.core.tasks import publications_publish_on_commit

from .delivery import webhook_endpoint_drain, webhook_endpoint_probe, webhook_messages_deliver
from .notify import webhook_endpoint_disabled_email
from .relay import webhook_messages_relay


@shared_task(name="webhooks.webhook_messages_deliver_task", queue=Queue.WEBHOOKS.value, acks_late=True,
             reject_on_worker_lost=True, ignore_result=True)
def webhook_messages_deliver_task(message_ids: list[str]) -> dict[str, int]:
    report = webhook_messages_deliver(message_ids=message_ids)
    return {"claimed": report.claimed, "succeeded": report.succeeded,
            "retrying": report.retrying, "failed": report.failed}


@shared_task(name="webhooks.webhook_endpoint_probe_task", queue=Queue.WEBHOOKS.value, acks_late=True,
             reject_on_worker_lost=True, ignore_result=True)
def webhook_endpoint_probe_task(endpoint_id: str) -> dict[str, bool]:
    report = webhook_endpoint_probe(endpoint_id=endpoint_id)
    return {"probed": report.probed, "succeeded": report.succeeded}


@shared_task(name="webhooks.webhook_endpoint_drain_task", queue=Queue.WEBHOOKS.value, acks_late=True,
             reject_on_worker_lost=True, ignore_result=True)
def webhook_endpoint_drain_task(endpoint_id: str) -> dict[str, int]:
    report = webhook_endpoint_drain(endpoint_id=endpoint_id)
    return {"sent": report.sent, "more": int(report.more)}


@shared_task(name="webhooks.webhook_messages_relay_task", queue=Queue.MAINTENANCE.value, ignore_result=True)
def webhook_messages_relay_task() -> dict[str, int]:
    report = webhook_messages_relay()
    publications_publish_on_commit(report.publications)
    return {"published": report.published, "recovered": report.recovered,
            "failed": report.failed, "endpoints_disabled": report.endpoints_disabled,
            "probes": report.probes, "unparked": report.unparked}


@shared_task(name="webhooks.webhook_endpoint_disabled_email_task", queue=Queue.WEBHOOKS.value, acks_late=True,
             ignore_result=True, autoretry_for=(smtplib.SMTPException, OSError),
             retry_backoff=30, retry_backoff_max=600, max_retries=6)
def webhook_endpoint_disabled_email_task(endpoint_id: str) -> bool:
    return webhook_endpoint_disabled_email(endpoint_id=endpoint_id)
