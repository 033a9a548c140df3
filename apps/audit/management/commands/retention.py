"""`manage.py retention [--dry-run]`: what the beat tasks do, with progress on stdout."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.audit.context import Actor, audit_actor
from apps.audit.models import ActorType
from apps.audit.retention import audit_logs_purge, notifications_purge


class Command(BaseCommand):
    help = ("Deletes notifications older than NOTIFICATION_RETENTION_DAYS (with their deliveries "
            "and events) and audit rows older than AUDIT_RETENTION_DAYS, in batches.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true",
                            help="Walk the batches and report what would be deleted; delete nothing.")
        parser.add_argument("--only", choices=["notifications", "audit"],
                            help="Run one of the two.")
        parser.add_argument("--notification-days", type=int,
                            help="Override NOTIFICATION_RETENTION_DAYS (0 keeps everything).")
        parser.add_argument("--audit-days", type=int,
                            help="Override AUDIT_RETENTION_DAYS (0 keeps everything).")
        parser.add_argument("--batch-size", type=int,
                            help="Notifications (or audit rows) per batch.")
        parser.add_argument("--max-seconds", type=float,
                            help="Stop after this long (the next run goes on).")

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run, only = options["dry_run"], options["only"]
        common: dict[str, Any] = {"dry_run": dry_run, "batch_size": options["batch_size"],
                                  "time_budget": options["max_seconds"], "progress": self._progress}
        if dry_run:
            self.stdout.write("Dry run: nothing is deleted.")
        with audit_actor(Actor(ActorType.SYSTEM, "", "manage.py retention")):
            if only in (None, "notifications"):
                result = notifications_purge(days=options["notification_days"], **common)
                self.stdout.write(self.style.SUCCESS(result.summary("notifications", dry_run=dry_run)))
            if only in (None, "audit"):
                audit = audit_logs_purge(days=options["audit_days"], **common)
                self.stdout.write(self.style.SUCCESS(audit.summary("audit log", dry_run=dry_run)))

    def _progress(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()
