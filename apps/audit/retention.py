"""Retention: notifications older than NOTIFICATION_RETENTION_DAYS (with their deliveries and
delivery events) and audit rows older than AUDIT_RETENTION_DAYS are deleted in batches.

Every batch is its own short transaction, so a run can stop anywhere (time budget, worker
restart) and the next one goes on; running twice deletes nothing twice. Notifications are taken
per client, oldest first, through the (client, created_at) index; each batch's deliveries go
RETENTION_DELIVERY_BATCH_SIZE at a time through Django's collector, which also clears whatever
else points at them (delivery events, suppressions' source delivery). Audit rows go oldest id
first. A run that deleted something writes one `retention.*` audit row (actor `system`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.clients.models import Client
from apps.notifications.models import Delivery, Notification

from .models import AuditLog
from .services import audit_record

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass
class RetentionResult:
    cutoff: datetime | None  # None: retention disabled (0 days)
    deleted: int = 0  # notifications or audit rows (with dry_run: would be deleted)
    deliveries: int = 0
    batches: int = 0
    complete: bool = True  # False: the time budget ran out first

    def summary(self, noun: str, *, dry_run: bool) -> str:
        if self.cutoff is None:
            return f"{noun}: retention disabled"
        verb = "would delete" if dry_run else "deleted"
        extra = f" ({self.deliveries} deliveries)" if noun == "notifications" else ""
        state = "" if self.complete else "; stopped by the time budget, the next run goes on"
        return (f"{noun}: {verb} {self.deleted}{extra} created before {self.cutoff:%Y-%m-%d %H:%M} "
                f"UTC in {self.batches} batch(es){state}")


def _cutoff(days: int, now: datetime | None) -> datetime | None:
    return (now or timezone.now()) - timedelta(days=days) if days > 0 else None


def _log(progress: Progress | None, message: str) -> None:
    logger.info("retention: %s", message)
    if progress is not None:
        progress(message)


def _out_of_time(started: float, budget: float | None) -> bool:
    return budget is not None and time.monotonic() - started >= budget


def _delete_deliveries(notification_ids: Sequence[UUID], batch_size: int) -> int:
    deleted = 0
    while True:
        ids = list(Delivery.objects.filter(notification_id__in=notification_ids)
                   .values_list("id", flat=True)[:batch_size])
        if not ids:
            return deleted
        with transaction.atomic():
            Delivery.objects.filter(id__in=ids).delete()
        deleted += len(ids)


def notifications_purge(
    *, days: int | None = None, now: datetime | None = None, dry_run: bool = False,
    batch_size: int | None = None, delivery_batch_size: int | None = None,
    time_budget: float | None = None, progress: Progress | None = None,
) -> RetentionResult:
    """Deletes notifications created more than `days` (NOTIFICATION_RETENTION_DAYS) ago, with
    their deliveries and events. `dry_run` walks the same batches and deletes nothing."""
    days = settings.NOTIFICATION_RETENTION_DAYS if days is None else days
    batch_size = batch_size or settings.RETENTION_BATCH_SIZE
    delivery_batch_size = delivery_batch_size or settings.RETENTION_DELIVERY_BATCH_SIZE
    result = RetentionResult(cutoff=_cutoff(days, now))
    if result.cutoff is None:
        return result
    started = time.monotonic()
    for client_id, slug in Client.objects.order_by("slug").values_list("id", "slug"):
        old = Notification.objects.filter(client_id=client_id, created_at__lt=result.cutoff)
        last: tuple[datetime, UUID] | None = None
        while True:
            if _out_of_time(started, time_budget):
                result.complete = False
                _log(progress, result.summary("notifications", dry_run=dry_run))
                return result
            page = old.order_by("created_at", "id")
            if dry_run and last is not None:  # nothing is deleted: walk on past the last batch
                page = page.filter(created_at__gte=last[0]).exclude(created_at=last[0], id__lte=last[1])
            rows = list(page.values_list("created_at", "id")[:batch_size])
            if not rows:
                break
            ids = [row[1] for row in rows]
            if dry_run:
                deliveries = Delivery.objects.filter(notification_id__in=ids).count()
                last = rows[-1]
            else:
                deliveries = _delete_deliveries(ids, delivery_batch_size)
                with transaction.atomic():
                    Notification.objects.filter(id__in=ids).delete()
            result.deleted += len(ids)
            result.deliveries += deliveries
            result.batches += 1
            _log(progress, f"notifications: client {slug}: batch {result.batches}: "
                           f"{'would delete' if dry_run else 'deleted'} {len(ids)} notifications, "
                           f"{deliveries} deliveries (total {result.deleted})")
    _log(progress, result.summary("notifications", dry_run=dry_run))
    if result.deleted and not dry_run:
        audit_record(action="retention.notifications", changes={
            "cutoff": result.cutoff, "notifications": result.deleted,
            "deliveries": result.deliveries, "complete": result.complete})
    return result


def audit_logs_purge(
    *, days: int | None = None, now: datetime | None = None, dry_run: bool = False,
    batch_size: int | None = None, time_budget: float | None = None,
    progress: Progress | None = None,
) -> RetentionResult:
    """Deletes audit rows created more than `days` (AUDIT_RETENTION_DAYS) ago."""
    days = settings.AUDIT_RETENTION_DAYS if days is None else days
    batch_size = batch_size or settings.AUDIT_RETENTION_BATCH_SIZE
    result = RetentionResult(cutoff=_cutoff(days, now))
    if result.cutoff is None:
        return result
    started = time.monotonic()
    old = AuditLog.objects.filter(created_at__lt=result.cutoff).order_by("id")
    last_id = 0
    while True:
        if _out_of_time(started, time_budget):
            result.complete = False
            break
        ids = list(old.filter(id__gt=last_id).values_list("id", flat=True)[:batch_size])
        if not ids:
            break
        if dry_run:
            last_id = ids[-1]
        else:
            with transaction.atomic():
                AuditLog.objects.filter(id__in=ids).delete()
        result.deleted += len(ids)
        result.batches += 1
        _log(progress, f"audit log: batch {result.batches}: "
                       f"{'would delete' if dry_run else 'deleted'} {len(ids)} rows (total {result.deleted})")
    _log(progress, result.summary("audit log", dry_run=dry_run))
    if result.deleted and not dry_run:
        audit_record(action="retention.audit", changes={
            "cutoff": result.cutoff, "rows": result.deleted, "complete": result.complete})
    return result
