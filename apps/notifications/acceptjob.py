"""An accept job's writer: `JobBuilder` collects a large accept's validated items and writes
them as one `AcceptJob` with its encrypted slices; `accept_job_publish` publishes the task
expanding a slice. The expansion itself is fanout.py (see its docstring); bulk.py builds jobs
with this module, and fanout.py expands them with bulk.py's writers, so neither imports the
other back."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models

from apps.audit.context import current_context
from apps.clients.models import Client
from apps.core import ids
from apps.core.crypto import encrypt
from apps.core.queues import Priority
from apps.core.tasks import task_publish

from .models import AcceptJob, AcceptJobSlice

logger = logging.getLogger(__name__)

_URGENCY = [p.value for p in Priority]  # critical first
EXPAND_TASK = "notifications.accept_job_expand_task"
_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}

# An item: [notification id, external id, inline fields or None, stored recipient id or None,
#           pinned version id or None, due time (ISO) or None, first creation tick]
Item = list[Any]


class JobBuilder:
    """Collects an accept's validated items and writes them as a job with its slices."""

    def __init__(self, *, client: Client, is_test: bool, now: datetime) -> None:
        self.id = ids.uuid4()
        self.client_id = client.id
        self.is_test = is_test
        self.now = now
        self.items: list[Item] = []
        self.sizes: list[int] = []  # deliveries per item
        self.by_channel: dict[tuple[str, str], int] = defaultdict(int)
        self.priorities: set[str] = set()
        self._bounds: list[tuple[int, int]] | None = None

    def add(self, plan: Any, recipient: Any, fields: Mapping[str, Any] | None, *,
            version_id: Any, due_at: datetime | None, tick: int) -> None:
        """One recipient of one notification (`plan`: bulk.Plan; `recipient`: a
        bulk.PlannedRecipient), with the inline fields to upsert it with."""
        stored_id = recipient.stored_id
        self.items.append([
            str(plan.notification_id), recipient.external_id, dict(fields) if fields else None,
            str(stored_id) if stored_id else None, str(version_id) if version_id else None,
            due_at.isoformat() if due_at else None, tick,
        ])
        self.sizes.append(len(plan.channels))
        for channel in plan.channels:
            self.by_channel[(channel, plan.priority)] += 1
        self.priorities.add(plan.priority)

    @property
    def priority(self) -> str:
        """The job's queue: its most urgent notification's."""
        return min(self.priorities or {Priority.NORMAL.value}, key=_URGENCY.index)

    def _slices(self) -> Iterator[tuple[int, int]]:
        start, limit = 0, max(int(settings.ACCEPT_FANOUT_FIRST_SLICE), 1)
        while start < len(self.items):
            end, size = start, 0
            while end < len(self.items) and (end == start or size + self.sizes[end] <= limit):
                size += self.sizes[end]
                end += 1
            yield start, end
            start, limit = end, max(int(settings.ACCEPT_FANOUT_SLICE), 1)

    def _split(self) -> list[tuple[int, int]]:
        if self._bounds is None:
            self._bounds = list(self._slices())
        return self._bounds

    def audited_at_accept(self) -> set[str]:
        """Notifications whose items span several slices (a large send): their
        `notification.send` row is written by the accept. Every other notification's row is
        written by the slice holding all its items, with its deliveries (`rows`)."""
        spanning: set[str] = set()
        for start, _end in self._split()[1:]:
            if self.items[start][0] == self.items[start - 1][0]:
                spanning.add(self.items[start][0])
        return spanning

    def rows(self, *, audit: Mapping[str, tuple[str, Any]] | None = None,
             ) -> list[tuple[type[models.Model], list[Any]]]:
        """The job and its slices, for bulk.rows_insert. `audit`: notification id → (template
        key, version) of the notifications whose `notification.send` row a slice writes (those
        not in `audited_at_accept`): each slice's payload names those whose items it holds."""
        last: dict[str, int] = {}
        for position, item in enumerate(self.items):
            last[item[0]] = position
        completes_at: dict[int, list[str]] = defaultdict(list)
        for notification_id, position in last.items():
            completes_at[position].append(notification_id)
        audit = audit or {}
        templates: dict[tuple[str, Any], int] = {}  # (key, version) → its index in the payload
        slices = []
        for seq, (start, end) in enumerate(self._split()):
            completes = [n for p in range(start, end) for n in completes_at.get(p, ())]
            items = self.items[start:end]
            payload: Any = items
            if audit:
                # Aligned with `completes`: the index of the notification's (template key,
                # version) when this slice writes its row, null when the accept did.
                marks = [None if n not in audit else templates.setdefault(audit[n], len(templates))
                         for n in completes]
                payload = {"items": items, "audit": marks,
                           "templates": [list(t) for t in templates]}
            slices.append({
                "job_id": self.id, "seq": seq,
                "payload": encrypt(json.dumps(payload, separators=(",", ":"))),
                "completes": completes,
            })
        context = current_context()
        job = AcceptJob(
            actor={"type": context.actor.type, "id": context.actor.id,
                   "display": context.actor.display, "request_id": context.request_id,
                   "ip": context.ip, "user_agent": context.user_agent},
            id=self.id, client_id=self.client_id, priority=self.priority, is_test=self.is_test,
            slices=len(slices), cursor=0, deliveries_planned=sum(self.sizes),
            lease_until=self.now + timedelta(seconds=settings.ACCEPT_JOB_LEASE_SECONDS),
            accepted_at=self.now,
        )
        return [(AcceptJob, [job]), (AcceptJobSlice, slices)]

    def publish(self) -> None:
        accept_job_publish(job_id=self.id, priority=self.priority, cursor=0)


def accept_job_publish(*, job_id: Any, priority: str, cursor: int | None) -> bool:
    """Publishes the task expanding slice `cursor` of the job. Never raises for a broker
    problem: the job's lease makes the relay sweeper publish it again."""
    try:
        task_publish(
            EXPAND_TASK, args=[str(job_id), cursor], queue=Priority(priority).queue.value, retry=True,
            retry_policy=_PUBLISH_RETRY)
    except Exception:
        logger.exception("could not publish accept job %s; the relay sweeper will", job_id)
        return False
    return True
