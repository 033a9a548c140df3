"""`manage.py gdpr_erase --client <slug> <external_id> [--no-input]`: erases the recipient
(the same as POST /api/v1/recipients/{id}/erase) and prints the tombstone id and counts."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.context import Actor, audit_actor
from apps.audit.models import ActorType
from apps.core.exceptions import ApplicationError

from ...services import recipient_erase
from ._common import add_recipient_arguments, recipient_from_options


class Command(BaseCommand):
    help = ("Erases a recipient's personal data everywhere (GDPR erasure request). "
            "Irreversible; see docs/privacy.md.")

    def add_arguments(self, parser: CommandParser) -> None:
        add_recipient_arguments(parser)
        parser.add_argument("--no-input", "--noinput", action="store_false", dest="interactive",
                            help="Do not ask for confirmation.")

    def handle(self, *args: Any, **options: Any) -> None:
        recipient = recipient_from_options(options)
        if options["interactive"]:
            answer = input(f"Erase recipient '{recipient.external_id}' of {recipient.client}? "
                           "This cannot be undone. Type 'yes' to continue: ")
            if answer.strip().lower() != "yes":
                raise CommandError("Erasure cancelled.")
        with audit_actor(Actor(ActorType.SYSTEM, "", "manage.py gdpr_erase")):
            try:
                result = recipient_erase(recipient=recipient)
            except ApplicationError as exc:
                raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(self.style.SUCCESS(f"Erased; the history now carries {result.tombstone}."))
        for name, count in result.counts.items():
            self.stdout.write(f"  {name}: {count}")
