"""`manage.py gdpr_export --client <slug> <external_id> [--output FILE]`: the recipient's
export document (the same JSON as GET /api/v1/recipients/{id}/export), on stdout or in a file."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.audit.context import Actor, audit_actor
from apps.audit.models import ActorType

from ...selectors import recipient_export
from ...services import recipient_export_log
from ._common import add_recipient_arguments, recipient_from_options


class Command(BaseCommand):
    help = "Writes everything NotifyHub holds about a recipient as JSON (GDPR access request)."

    def add_arguments(self, parser: CommandParser) -> None:
        add_recipient_arguments(parser)
        parser.add_argument("--output", "-o", help="Write to this file instead of stdout.")

    def handle(self, *args: Any, **options: Any) -> None:
        recipient = recipient_from_options(options)
        with audit_actor(Actor(ActorType.SYSTEM, "", "manage.py gdpr_export")):
            recipient_export_log(recipient=recipient)
        chunks = recipient_export(recipient=recipient)
        if options["output"]:
            with open(options["output"], "w", encoding="utf-8") as out:
                for chunk in chunks:
                    out.write(chunk)
            self.stderr.write(f"Written to {options['output']}.")
            return
        for chunk in chunks:
            self.stdout.write(chunk, ending="")
        self.stdout.write("")
