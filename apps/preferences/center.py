"""The hosted preference center's links: `/preferences/<token>/`, a page where a recipient sets
their channels, categories, quiet hours and time zone (views.py).

Like the unsubscribe link, the token is `django.core.signing` with its own salt and no expiry
(it sits in emails and in the inbox widget; rotate keys with SECRET_KEY_FALLBACKS), and it names
the client and the recipient: a token whose recipient no longer exists, or belongs to another
client, opens nothing.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import time

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from apps.notifications.models import Channel
from apps.notifications.suppressions import CONFIRMATION_CATEGORY
from apps.recipients.models import Recipient
from apps.templates.models import Template

from .models import PreferenceProfile
from .selectors import critical_categories

SALT = "notifyhub.preferences.center"


class BadCenterToken(Exception):
    pass


@dataclass(frozen=True)
class CenterTarget:
    client_id: str
    recipient_id: str


def preference_center_token(client_id: object, recipient_pk: object) -> str:
    return signing.dumps({"c": str(client_id), "r": str(recipient_pk)}, salt=SALT)


def preference_center_url(client_id: object, recipient_pk: object) -> str:
    """The absolute, signed, login-free URL of a recipient's preference center."""
    prefix, suffix = _center_path()
    return f"{settings.PUBLIC_BASE_URL}{prefix}{preference_center_token(client_id, recipient_pk)}{suffix}"


@functools.cache
def _center_path() -> tuple[str, str]:
    marker = "TOKEN0MARKER"
    path = reverse("preference-center", args=[marker])
    prefix, _, suffix = path.partition(marker)
    return prefix, suffix


def center_target(token: str) -> CenterTarget:
    """Whom a token opens the center for; BadCenterToken when it was not signed by us."""
    try:
        data = signing.loads(token, salt=SALT)
    except signing.BadSignature as exc:
        raise BadCenterToken("This link is not valid.") from exc
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("c", "r")):
        raise BadCenterToken("This link is not valid.")
    return CenterTarget(client_id=data["c"], recipient_id=data["r"])


def center_recipient(token: str) -> Recipient:
    """The token's recipient, if it still exists and still belongs to the token's client;
    BadCenterToken otherwise (a malformed id included)."""
    target = center_target(token)
    try:
        recipient = Recipient.objects.filter(pk=target.recipient_id,
                                             client_id=target.client_id).first()
    except (ValidationError, ValueError) as exc:  # a signed but malformed uuid
        raise BadCenterToken("This link is not valid.") from exc
    if recipient is None:
        raise BadCenterToken("This link is not valid.")
    return recipient


# -- what the page shows ----------------------------------------------------------------------

# How the page names a category: categories are free names a client gives its templates
# (`[a-z0-9_.-]`), so the usual ones have a translated label (locale/fr), and any other is its
# name made readable ("order_updates" → "Order updates").
CATEGORY_LABELS: dict[str, Promise] = {
    "security": _("Security alerts"),
    "otp": _("One-time passcodes"),
    "transactional": _("Account and service messages"),
    "marketing": _("News and offers"),
    "updates": _("Product updates"),
    "newsletter": _("Newsletters"),
    "reminders": _("Reminders"),
    "billing": _("Billing and payments"),
}
CHANNEL_LABELS: dict[str, Promise] = {
    "email": _("Email"),
    "sms": _("SMS (text messages)"),
    "whatsapp": _("WhatsApp"),
    "push": _("Push notifications"),
    "in_app": _("In-app messages"),
}
# The unsubscribe offer for a whole channel, one sentence each (a channel's label does not fit
# in one sentence for every language).
CHANNEL_UNSUBSCRIBE_QUESTIONS: dict[str, Promise] = {
    "email": _("Stop receiving all emails?"),
    "sms": _("Stop receiving all text messages?"),
    "whatsapp": _("Stop receiving all WhatsApp messages?"),
    "push": _("Stop receiving all push notifications?"),
    "in_app": _("Stop receiving all in-app messages?"),
}
_SEPARATORS = re.compile(r"[_.\-]+")


def category_label(name: str) -> str:
    """The category's name for people, in the active language."""
    known = CATEGORY_LABELS.get(name.lower())
    if known is not None:
        return str(known)
    return capfirst(_SEPARATORS.sub(" ", name).strip()) or name


def channel_label(channel: str) -> str:
    known = CHANNEL_LABELS.get(channel)
    return str(known) if known is not None else channel


@dataclass(frozen=True)
class CategoryState:
    name: str
    enabled: bool
    critical: bool  # shown, always on, cannot be turned off

    @property
    def label(self) -> str:
        return category_label(self.name)


@dataclass(frozen=True)
class CenterState:
    """A recipient's effective preferences, as the page shows them (defaults filled in)."""

    channels: dict[str, bool]  # every channel, in Channel order
    categories: list[CategoryState]
    quiet_hours_start: time | None
    quiet_hours_end: time | None
    timezone: str  # the zone quiet hours use: the profile's override, else the recipient's
    recipient_timezone: str


def center_state(recipient: Recipient) -> CenterState:
    """Two queries: the profile, and the categories of the client's templates (a person can
    choose a category before anything of it was sent to them)."""
    profile = PreferenceProfile.objects.filter(recipient_id=recipient.pk).first()
    stored_channels = profile.channels if profile else {}
    stored_categories = profile.categories if profile else {}
    critical = critical_categories()
    names = set(Template.objects.filter(client_id=recipient.client_id)
                .values_list("category", flat=True).distinct())
    names |= set(stored_categories) | critical
    names.discard(CONFIRMATION_CATEGORY)
    categories = [
        CategoryState(name=name, critical=name.lower() in critical,
                      enabled=name.lower() in critical or stored_categories.get(name) is not False)
        for name in sorted(names, key=lambda n: (n.lower() not in critical, n))
    ]
    channels = {channel: (stored_channels.get(channel) or {}).get("enabled") is not False
                for channel in Channel.values}
    recipient_tz = recipient.timezone or "UTC"
    return CenterState(
        channels=channels, categories=categories,
        quiet_hours_start=profile.quiet_hours_start if profile else None,
        quiet_hours_end=profile.quiet_hours_end if profile else None,
        timezone=(profile.quiet_hours_timezone if profile else "") or recipient_tz,
        recipient_timezone=recipient_tz,
    )
