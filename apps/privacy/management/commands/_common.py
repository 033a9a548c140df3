from __future__ import annotations

from django.core.management.base import CommandError, CommandParser

from apps.clients.models import Client
from apps.core.exceptions import NotFound
from apps.recipients.models import Recipient

from ...selectors import recipient_for_privacy


def add_recipient_arguments(parser: CommandParser) -> None:
    parser.add_argument("--client", required=True, help="The client's slug.")
    parser.add_argument("external_id", help="The client's id for the recipient.")


def recipient_from_options(options: dict[str, object]) -> Recipient:
    client = Client.objects.filter(slug=options["client"]).first()
    if client is None:
        raise CommandError(f"No client with slug '{options['client']}'.")
    try:
        return recipient_for_privacy(client=client, external_id=str(options["external_id"]))
    except NotFound as exc:
        raise CommandError(exc.message) from exc
