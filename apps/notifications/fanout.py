"""Large sends: accepted as a job in the request, expanded into deliveries by workers.

What GOV.UK Notify does with CSV jobs. A send (or bulk request) of at least
ACCEPT_FANOUT_MIN_DELIVERIES deliveries is checked in full by `notifications_accept` (every rule
that can refuse it, all or nothing, nothing decrypted), which then writes only the notifications
(`pending`, `recipient_count` known, `accept_job` set), the quota charge and one `AcceptJob`
with its slices: the validated items, each slice's JSON encrypted as one token (inline
recipients carry addresses). 202. The `notification.send` audit row of a notification whose
items all fall in one slice (every item of a bulk request, typically) is written by that
slice, with its deliveries, in the sender's name (the job keeps the sender's actor, IP, user
agent and request id) and dated at the accept; a notification spanning slices (a large send)
gets its row in the request. Either way the row is durable at the 202: the committed job
writes it exactly once.

After commit `accept_job_expand_task` (on the job's priority queue) expands one slice per task:
the slice's inline recipients upserted, its deliveries, "accepted" events and `recipient.upsert`
audit row written by the same writers as a small accept (bulk.DeliveryRows → rows_insert),
the slice row deleted and the job's cursor advanced, all in one transaction under the job's
row lock: a duplicate or concurrent task (its cursor is not the job's, or the row is locked)
does nothing, so every slice is expanded exactly once. After commit it publishes the next
slice's task first, then the slice's dispatch tasks. The first slice is small
(ACCEPT_FANOUT_FIRST_SLICE deliveries) so the first message leaves within a moment of the 202.

Safety nets: the job's `lease_until` is moved forward by every slice; the relay sweeper
re-publishes a job whose lease ended (its expand task was lost, its worker died).
A notification cancelled or deleted meanwhile is detached from the job (`accept_job` NULL, or
gone): its remaining items are skipped. A slice locks the rows of its notifications (detaching
those it completes, share-locking the one it continues), so a cancel or delete waits for it and
then sees its deliveries: no delivery is created after a cancel commits. A recipient that
existed at accept and is gone at expansion (erased: the erasure replaces the row with a
tombstone; or deleted) is skipped, and so is a stored recipient id that no longer resolves.
While a notification is attached to its job the status refresh never calls it final
(status.py).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.audit.context import SYSTEM, Actor, audit_actor, current_context
from apps.clients.models import Client
from apps.core.crypto import decrypt, pii_batch
from apps.core.tasks import publications_publish_on_commit
from apps.recipients.models import Recipient
from apps.webhooks.outbound.outbox import webhook_completions_record

from .acceptjob import Item, accept_job_publish
from .models import AcceptJob, AcceptJobSlice, Notification
from .status import notifications_refresh_status

logger = logging.getLogger(__name__)

@dataclass
class ExpandReport:
    expanded: bool = False  # False: done already, or another task holds or passed this slice
    created: int = 0
    skipped: int = 0  # items skipped: notification cancelled/deleted, recipient erased/gone
    done: bool = False


def accept_job_expand(*, job_id: Any, cursor: int | None = None) -> ExpandReport:
    """Expands the job's next slice (see the module docstring). `cursor`: the slice the task
    was published for; a task for another one (a duplicate, a stale re-publish) does nothing.
    Publishes the next slice's task and this slice's dispatch tasks after commit."""
    report = ExpandReport()
    with pii_batch(), transaction.atomic():
        job = (AcceptJob.objects.select_for_update(skip_locked=True)
               .filter(id=job_id, completed_at__isnull=True).first())
        if job is None or (cursor is not None and job.cursor != cursor):
            return report
        now = timezone.now()
        piece = AcceptJobSlice.objects.filter(job=job, seq=job.cursor).first()
        publish: list[tuple[str, str]] = []
        first_notification = ""
        released: list[str] = []
        if piece is not None:
            payload = json.loads(decrypt(piece.payload))
            # A job accepted before slices wrote the `notification.send` rows has a bare list
            # (its rows were written by the accept).
            items: list[Item] = payload["items"] if isinstance(payload, dict) else payload
            audit_of: list[list[Any]] = []
            if isinstance(payload, dict):
                kept = payload["templates"]
                audit_of = [[n, *kept[mark]] for n, mark in zip(piece.completes, payload["audit"],
                                                                 strict=True) if mark is not None]
            first_notification = items[0][0] if items else ""
            actor = job.actor or {}
            with audit_actor(Actor(actor.get("type") or SYSTEM.type, actor.get("id", ""),
                                   actor.get("display") or SYSTEM.display),
                             request_id=actor.get("request_id", "")):
                out, report.skipped, released = _expand(job, items, now, set(piece.completes),
                                                        audit_of)
            publish = out.publish
            report.created = len(out.rows)
            piece.delete()
        job.cursor += 1
        job.deliveries_created += report.created
        job.items_skipped += report.skipped
        report.expanded = True
        report.done = job.cursor >= job.slices or piece is None
        job.lease_until = (None if report.done
                           else now + timedelta(seconds=settings.ACCEPT_JOB_LEASE_SECONDS))
        if report.done:
            job.completed_at = now
            # Every notification's last item was in some slice; none should be left attached.
            released += [str(i) for i in Notification.objects.filter(accept_job_id=job.id)
                         .values_list("id", flat=True)]
            Notification.objects.filter(accept_job_id=job.id).update(accept_job=None)
        job.save(update_fields=["cursor", "deliveries_created", "items_skipped", "lease_until",
                                "completed_at", "updated_at"])
        # Only a notification whose deliveries began in an earlier slice (the slice's first
        # one; or any, once the job ends) can have some already finished: the others have only
        # the `pending`/`scheduled` deliveries just written, which their stored status already
        # says (their counts come with the first dispatch's refresh).
        earlier = (set(released) if report.done
                   else {i for i in released if i == first_notification})
        if earlier:
            notifications_refresh_status(notification_ids=earlier)
            publications_publish_on_commit(webhook_completions_record(notification_ids=earlier))
        next_cursor, priority = job.cursor, job.priority

        def after_commit() -> None:
            from .enqueue import deliveries_enqueue

            if not report.done:
                accept_job_publish(job_id=job.id, priority=priority, cursor=next_cursor)
            if publish:
                deliveries_enqueue(items=publish, mark_queued=False)

        transaction.on_commit(after_commit)
    return report


def _expand(
    job: AcceptJob, items: list[Item], now: datetime, completes: set[str],
    audit_of: Sequence[list[Any]] = (),
) -> tuple[Any, int, list[str]]:
    """The deliveries of one slice's items, written, with the `notification.send` rows of
    `audit_of` ([notification id, template key, version]: the notifications whose items are
    all in this slice); returns (bulk.DeliveryRows, items skipped, ids of the notifications
    this slice completes, now detached from the job)."""
    from .bulk import (
        DeliveryRows,
        Plan,
        SendRequest,
        _Errors,
        _resolve_recipients,
        bulk_field,
        mark_devices,
    )

    # The notifications still attached to this job, locked: those whose last item is here are
    # detached now (UPDATE), the one continuing into the next slice share-locked. A cancel or
    # delete waits for this slice (and then sees its deliveries), or committed first and its
    # items are skipped.
    ids = {item[0] for item in items}
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE notifications_notification SET accept_job_id = NULL"
            " WHERE id = ANY(%s::uuid[]) AND accept_job_id = %s"
            " RETURNING id::text, channels, priority",
            [sorted(ids & completes), job.id])
        rows = cursor.fetchall()
        released = [row[0] for row in rows]
        if ids - completes:
            cursor.execute(
                "SELECT id::text, channels, priority FROM notifications_notification"
                " WHERE id = ANY(%s::uuid[]) AND accept_job_id = %s ORDER BY id FOR SHARE",
                [sorted(ids - completes), job.id])
            rows += cursor.fetchall()
        parsed: dict[str, list[str]] = {}  # the same few channel lists, parsed once each
        plans = {
            nid: Plan(uuid.UUID(nid), (parsed[ch] if ch in parsed else parsed.setdefault(
                ch, json.loads(ch))) if isinstance(ch, str) else ch, priority)
            for nid, ch, priority in rows
        }
    live = [item for item in items if item[0] in plans]
    # A recipient that existed at accept and is gone now was erased (or deleted): skipped,
    # never re-created from the job's copy of its fields.
    stored_ids = {item[3] for item in live if item[3]}
    still = {str(i) for i in Recipient.objects.filter(id__in=stored_ids).values_list("id", flat=True)}
    live = [item for item in live if not item[3] or item[3] in still]
    client = Client.objects.get(id=job.client_id)
    channels = sorted({c for plan in plans.values() for c in plan.channels})
    request = SendRequest(
        recipients=[{**item[2], "id": item[1]} if item[2] is not None else item[1]
                    for item in live], template_id="")
    audit: list[Any] = []
    known = _resolve_recipients(client, [request], [channels], _Errors(bulk_field), audit)
    push = {item[1] for item in live if "push" in plans[item[0]].channels}
    if push:
        mark_devices(known[e] for e in push if e in known)
    out = DeliveryRows(client_id=job.client_id, is_test=job.is_test, now=now)
    skipped = len(items) - len(live)
    accepted_at = job.accepted_at
    for item in live:
        recipient = known.get(item[1])
        if recipient is None:  # a stored recipient id that no longer resolves
            skipped += 1
            continue
        plan = plans[item[0]]
        out.add(plan, recipient, version_id=uuid.UUID(item[4]) if item[4] else None,
                due_at=datetime.fromisoformat(item[5]) if item[5] else None,
                stamp=_stamps(accepted_at, item[6]))
    out.insert(audit=audit, accepted_at=accepted_at,
               audit_rows=_send_rows(job, items, audit_of) if audit_of else ())
    return out, skipped, released


_SEND_ROWS_SQL = """
SELECT n.id::text, ARRAY(SELECT jsonb_array_elements_text(n.channels)), n.priority,
       n.category,
       ARRAY(SELECT k FROM jsonb_object_keys(n.variables) k ORDER BY k COLLATE "C"),
       ARRAY(SELECT k FROM jsonb_object_keys(n.metadata) k ORDER BY k COLLATE "C"),
       n.scheduled_at, n.idempotency_key, v.version, t.key
FROM notifications_notification n
JOIN templates_templateversion v ON v.id = n.template_version_id
JOIN templates_template t ON t.id = v.template_id
WHERE n.id = ANY(%s::uuid[])
"""


def _send_rows(job: AcceptJob, items: list[Item], audit_of: Sequence[list[Any]]) -> list[dict[str, Any]]:
    """The `notification.send` audit rows of the notifications whose items are all in this
    slice, exactly as the accept would have written them (docs/audit.md): in the sender's
    name, IP, user agent and request id (stored on the job), dated at the accept, listing the
    recipients as accepted (a recipient erased since is still listed). A notification
    cancelled meanwhile still gets its row (it was accepted); one deleted meanwhile gets it
    from what the job kept (template and recipients; its variable and metadata keys are
    gone with it, recorded as null)."""

    from .audit import notification_send_entry_of

    recipients: dict[str, list[str]] = defaultdict(list)
    wanted = {entry[0] for entry in audit_of}
    for item in items:
        if item[0] in wanted:
            recipients[item[0]].append(item[1])
    with connection.cursor() as cursor:
        cursor.execute(_SEND_ROWS_SQL, [sorted(wanted)])
        stored = {row[0]: row[1:] for row in cursor.fetchall()}
    context = current_context()
    actor = job.actor or {}
    rows = []
    for notification_id, kept_key, kept_version in audit_of:
        row = stored.get(notification_id)
        if row is not None:
            channels, priority, category, variables, metadata, scheduled_at, key, version, \
                template_key = row
            entry = notification_send_entry_of(
                client_id=job.client_id, notification_id=uuid.UUID(notification_id),
                template_key=template_key, version=version, channels=channels,
                priority=priority, category=category, recipients=recipients[notification_id],
                variables=variables, metadata=metadata,  # their keys (read sorted)
                scheduled_at=scheduled_at, idempotency_key=key)
        else:
            entry = notification_send_entry_of(
                client_id=job.client_id, notification_id=uuid.UUID(notification_id),
                template_key=kept_key, version=kept_version, channels=[], priority="",
                category="", recipients=recipients[notification_id], variables=None,
                metadata=None, scheduled_at=None, idempotency_key=None)
            entry.changes = {**entry.changes, "channels": None, "priority": None,
                             "category": None, "variables": None, "metadata": None,
                             "deleted_before_expansion": True}
        values = entry.values(context)
        values.update(created_at=job.accepted_at, ip=actor.get("ip"),
                      user_agent=actor.get("user_agent") or "")
        rows.append(values)
    return rows


def _stamps(base: datetime, first: int) -> Callable[[], datetime]:
    """Creation times a microsecond apart from the accept's, as a small accept stamps them."""
    ticks = iter(range(first, first + 1000))
    return lambda: base + timedelta(microseconds=next(ticks))


_SWEEP_SQL = """
UPDATE notifications_acceptjob SET lease_until = %(next_lease)s, updated_at = %(now)s
WHERE id IN (SELECT id FROM notifications_acceptjob
             WHERE completed_at IS NULL AND lease_until <= %(now)s
             ORDER BY lease_until LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING id, priority, cursor
"""


def accept_jobs_sweep(*, limit: int = 100) -> int:
    """Re-publishes jobs whose lease ended (their expand task was lost or its worker died);
    returns how many. The lease moves first, so the next sweep leaves them alone meanwhile."""
    now = timezone.now()
    next_lease = now + timedelta(seconds=settings.ACCEPT_JOB_LEASE_SECONDS)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_SWEEP_SQL, {"now": now, "next_lease": next_lease, "limit": limit})
        rows = cursor.fetchall()
    for job_id, priority, cursor_at in rows:
        accept_job_publish(job_id=job_id, priority=priority, cursor=cursor_at)
    if rows:
        logger.info("relay sweep: re-published %d accept jobs", len(rows))
    return len(rows)
