"""`manage.py sync_roles`: creates the staff role groups and re-applies their permission sets
(apps/accounts/roles.py). Run it after `migrate` on every deploy: new models' permissions reach
the Administrator role, and hand edits of the role groups are undone. Idempotent."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.accounts.services import roles_sync
from apps.audit.context import Actor, audit_actor
from apps.audit.models import ActorType


class Command(BaseCommand):
    help = "Create the staff role groups and re-apply their permissions (apps/accounts/roles.py)."

    def handle(self, *args: Any, **options: Any) -> None:
        with audit_actor(Actor(ActorType.SYSTEM, "", "manage.py sync_roles")):
            changes = roles_sync()
        for change in changes:
            what = "created" if change.created else ("updated" if change.changed else "unchanged")
            self.stdout.write(f"{change.group}: {what} (+{len(change.added)} -{len(change.removed)})")
            for missing in change.missing:
                self.stderr.write(f"  {change.group}: no such permission: {missing}")
