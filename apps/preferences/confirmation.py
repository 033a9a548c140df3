"""The one message confirming an opt-out (FCC 24-18, 47 CFR 64.1200(a)(12)): after a STOP
that is new for at least one client, one SMS (or WhatsApp message) goes to the number through
the normal send path (a `critical` notification, dispatched by the workers, through the
channel's providers), within seconds. It is recorded in the consent evidence (action
`confirmed`, naming the delivery), never counted as a marketing send (category
`opt_out_confirmation`, outside caps and quiet hours), and let through although the number is
now opted out: the STOP's suppression row names this delivery, and dispatch lets exactly that
one pass (apps/notifications/suppressions.py). A repeated STOP adds no row, so it is never
confirmed twice until an opt-in lifts the opt-out."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from django.conf import settings

from apps.clients.models import Client
from apps.core.crypto import pii_hash
from apps.core.exceptions import Conflict
from apps.notifications.models import Channel, Suppression
from apps.notifications.providers.conf import provider_setting
from apps.notifications.services import notification_send
from apps.notifications.suppressions import CONFIRMATION_CATEGORY
from apps.recipients.models import Recipient
from apps.templates.models import Template
from apps.templates.services import VersionContent, template_create, template_version_create

from .models import ConsentAction, ConsentRecord

logger = logging.getLogger(__name__)

# Not a slug: no client can create, change or send a template by this key through the API.
TEMPLATE_KEY = "notifyhub.opt-out-confirmation"
DEFAULT_TEXT = ("You are unsubscribed and will receive no more messages from this number. "
                "Reply START to resubscribe.")
WHATSAPP_PREFIX = "whatsapp:"
BODY = "{{ text }}"
ACTOR = "system:opt-out-confirmation"


def bare_number(value: str) -> str:
    value = (value or "").strip()
    return value[len(WHATSAPP_PREFIX):] if value.lower().startswith(WHATSAPP_PREFIX) else value


def default_sender(channel: str) -> str:
    return str(provider_setting("TWILIO_WHATSAPP_FROM" if channel == Channel.WHATSAPP
                                else "TWILIO_SMS_FROM", ""))


def client_sender(client: Client, channel: str) -> str:
    """The number a client texts from on this channel (its own, else the service default)."""
    own = client.whatsapp_from if channel == Channel.WHATSAPP else client.sms_from
    return own or default_sender(channel)


def confirmation_text(client: Client, channel: str) -> str:
    """The client's text for this channel's sender, else PREFERENCES_OPT_OUT_CONFIRMATION_TEXT."""
    own = (client.whatsapp_opt_out_confirmation if channel == Channel.WHATSAPP
           else client.sms_opt_out_confirmation)
    return own.strip() or str(getattr(settings, "PREFERENCES_OPT_OUT_CONFIRMATION_TEXT",
                                      DEFAULT_TEXT))


def confirmation_template(client: Client) -> Template:
    """The client's confirmation template (created on first use): its body is the text,
    passed as a variable, so changing the text needs no new version."""
    template = Template.objects.filter(client=client, key=TEMPLATE_KEY).first()
    if template is None:
        try:
            template = template_create(
                client=client, key=TEMPLATE_KEY, name="Opt-out confirmation (NotifyHub)",
                channels=[Channel.SMS.value, Channel.WHATSAPP.value],
                category=CONFIRMATION_CATEGORY,
                content=VersionContent(sms_body=BODY, whatsapp_body=BODY), actor=ACTOR)
        except Conflict:  # created meanwhile by a concurrent STOP
            template = Template.objects.get(client=client, key=TEMPLATE_KEY)
    if template.active_version_id is None:
        template_version_create(template=template, sms_body=BODY, whatsapp_body=BODY, actor=ACTOR)
        template.refresh_from_db(fields=["active_version"])
    return template


@dataclass(frozen=True)
class Confirmation:
    delivery_id: str = ""  # the delivery sent through the normal path
    reply: str = ""  # no recipient to send to: the text, answered in the webhook's TwiML


def opt_out_confirm(
    *, channel: str, number: str, to: str, new_clients: Collection[str],
    recipients: Sequence[Recipient], actor: str, source: str, detail: dict[str, object],
) -> Confirmation:
    """Sends the one confirmation for a STOP that is new for `new_clients`. The sender is the
    client that texts from the number the STOP was sent to (else the first with a recipient
    at the number); the delivery goes to that client's recipient with the number. Call inside
    the STOP's transaction: the delivery is published when it commits."""
    if not new_clients or not getattr(settings, "PREFERENCES_OPT_OUT_CONFIRMATION", True):
        return Confirmation()
    ours = bare_number(to)
    mine = [r for r in recipients if str(r.client_id) in {str(c) for c in new_clients}]
    if not mine:
        # Nobody left to address a delivery to (the number's recipients were erased): the
        # answer to the STOP itself carries the confirmation.
        client = Client.objects.filter(id__in=list(new_clients)).order_by("created_at").first()
        return Confirmation(reply=confirmation_text(client, channel) if client else DEFAULT_TEXT)
    clients = {c.id: c for c in Client.objects.filter(id__in={r.client_id for r in mine})}
    mine.sort(key=lambda r: (client_sender(clients[r.client_id], channel) != ours,
                             -r.created_at.timestamp()))
    recipient = mine[0]
    client = clients[recipient.client_id]
    template = confirmation_template(client)
    outcome = notification_send(
        client=client, recipients=[recipient.external_id], template_id=str(template.id),
        variables={"text": confirmation_text(client, channel)}, channels=[channel],
        priority="critical", category=CONFIRMATION_CATEGORY,
    )
    delivery_id = str(outcome.deliveries[0].id)
    Suppression.objects.filter(client=client, channel=channel, address_hash=pii_hash(number),
                               category="").update(confirmation_delivery_id=delivery_id)
    ConsentRecord.objects.create(
        client=client, recipient=recipient, channel=channel, action=ConsentAction.CONFIRMED,
        source=source, actor=actor[:200],
        detail={**detail, "delivery_id": delivery_id,
                "notification_id": str(outcome.notification.id)},
    )
    logger.info("opt-out confirmation queued on %s (delivery %s)", channel, delivery_id)
    return Confirmation(delivery_id=delivery_id)
