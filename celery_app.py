"""The Celery app: queue declarations, routing and the beat schedule, in one place.

Workers (see Procfile and docs/operations.md "Processes"):
  celery -A celery_app worker -Q critical,high          # never behind bulk work; critical first
  celery -A celery_app worker -Q maintenance,normal,low # bulk; the sweeper never starves
  celery -A celery_app worker -Q webhooks               # client webhooks
  celery -A celery_app beat                             # relay sweeper and scheduled work

A worker takes its queues strictly in the order `-Q` names them (`queue_order_strategy`
"priority"): the first non-empty one wins, so `critical` overtakes `high` in the priority worker.
"""

from __future__ import annotations

import os
from typing import Any

import click
from celery import Celery, bootsteps
from celery.signals import beat_init, task_postrun, worker_process_init
from kombu import Queue as KombuQueue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyhub.settings.local")

from django.conf import settings
from django.db import close_old_connections

from apps.core import tracing
from apps.core.queues import Queue

app = Celery("notifyhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [KombuQueue(q.value, routing_key=q.value) for q in Queue]
app.conf.task_default_queue = Queue.NORMAL.value
app.conf.task_routes = {
    "notifications.relay_sweep_task": {"queue": Queue.MAINTENANCE.value},
    "scheduling.recurring_send_task": {"queue": Queue.MAINTENANCE.value},
    "webhooks.webhook_messages_deliver_task": {"queue": Queue.WEBHOOKS.value},
    "webhooks.webhook_endpoint_probe_task": {"queue": Queue.WEBHOOKS.value},
    "webhooks.webhook_endpoint_drain_task": {"queue": Queue.WEBHOOKS.value},
    "webhooks.webhook_messages_relay_task": {"queue": Queue.MAINTENANCE.value},
    "webhooks.webhook_endpoint_disabled_email_task": {"queue": Queue.WEBHOOKS.value},
    "audit.notifications_retention_task": {"queue": Queue.MAINTENANCE.value},
    "audit.audit_logs_retention_task": {"queue": Queue.MAINTENANCE.value},
}
app.conf.broker_transport_options = {
    "visibility_timeout": settings.CELERY_BROKER_VISIBILITY_TIMEOUT,
    # BRPOP over the worker's queues in its -Q order every time (kombu's default rotates them
    # round-robin, which lets a flood of `high` delay `critical` by a turn each time).
    "queue_order_strategy": "priority",
}
app.conf.broker_connection_retry_on_startup = True
# Celery's Django fixup closes every database connection before and after every task unless
# this is set (a new PostgreSQL connection, with its backend start-up, per task). With it, the
# fixup closes them only every 2 x this many tasks; in between, `close_old_connections` below
# applies Django's own rules after each task (CONN_MAX_AGE, health checks, a connection left
# unusable by an error is dropped), as a web request does.
app.conf.CELERY_DB_REUSE_MAX = 10_000
app.conf.worker_hijack_root_logger = False
app.conf.beat_schedule = {
    "relay-sweep": {
        "task": "notifications.relay_sweep_task",
        "schedule": settings.RELAY_SWEEP_INTERVAL_SECONDS,
        "options": {"queue": Queue.MAINTENANCE.value, "expires": settings.RELAY_SWEEP_INTERVAL_SECONDS},
    },
    # Client webhooks (apps/webhooks/outbound/relay.py): publishes due and lost messages.
    "webhooks-relay": {
        "task": "webhooks.webhook_messages_relay_task",
        "schedule": settings.WEBHOOKS_SWEEP_INTERVAL_SECONDS,
        "options": {"queue": Queue.MAINTENANCE.value,
                    "expires": settings.WEBHOOKS_SWEEP_INTERVAL_SECONDS},
    },
    # Retention (apps/audit/retention.py): batches within a time budget, every interval.
    "notifications-retention": {
        "task": "audit.notifications_retention_task",
        "schedule": settings.RETENTION_INTERVAL_SECONDS,
        "options": {"queue": Queue.MAINTENANCE.value, "expires": settings.RETENTION_INTERVAL_SECONDS},
    },
    "audit-logs-retention": {
        "task": "audit.audit_logs_retention_task",
        "schedule": settings.RETENTION_INTERVAL_SECONDS,
        "options": {"queue": Queue.MAINTENANCE.value, "expires": settings.RETENTION_INTERVAL_SECONDS},
    },
    # In-app inbox (apps/inbox/services.py): expired messages, in batches within a budget.
    "inbox-retention": {
        "task": "inbox.inbox_messages_expire_task",
        "schedule": settings.INBOX_RETENTION_INTERVAL_SECONDS,
        "options": {"queue": Queue.MAINTENANCE.value,
                    "expires": settings.INBOX_RETENTION_INTERVAL_SECONDS},
    },
}


class _Nice(bootsteps.Step):
    """`celery worker --nice N`: the worker (its pool processes are forked after this step and
    inherit it) runs N steps nicer (os.nice). The Procfile gives the bulk and webhook workers
    5: when the machine's cores are saturated (a burst of sends), the API and the priority
    worker get about three times their CPU share, so accepting stays fast and bulk deliveries
    queue behind the burst instead (docs/operations.md "Processes")."""

    def __init__(self, parent: Any, nice: int = 0, **options: Any) -> None:
        super().__init__(parent, **options)
        if nice:
            os.nice(nice)


app.user_options["worker"].add(click.Option(
    ("--nice",), type=int, default=0, show_default=True,
    help="Run the worker and its pool this many steps nicer (os.nice)."))
app.steps["worker"].add(_Nice)


@task_postrun.connect(weak=False)
def _close_old_connections(sender: object = None, **kwargs: object) -> None:
    # Not for a task run in-process (`apply()`, eager): its caller owns the connection.
    if not getattr(getattr(sender, "request", None), "is_eager", False):
        close_old_connections()


@worker_process_init.connect(weak=False)
def _trace_worker_process(**kwargs: object) -> None:
    # Traces (apps/core/tracing.py; off unless an OTEL_* exporter is configured): each prefork
    # child sets up its own provider and instrumentations after the fork. The parent never
    # does: it runs no task.
    tracing.configure("notifyhub-worker")


@beat_init.connect(weak=False)
def _trace_beat(**kwargs: object) -> None:
    tracing.configure("notifyhub-beat")  # its publishes start traces of their own


app.autodiscover_tasks(["apps.notifications", "apps.scheduling", "apps.audit", "apps.webhooks.outbound",
                        "apps.inbox"])
