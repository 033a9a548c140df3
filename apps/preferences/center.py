"""The hosted preference center's links: `/preferences/<token>/`, a page where a recipient sets
their channels, categories, quiet hours and time zone (views.py).

Like the unsubscribe link, the token is `django.core.signing` with its own salt and no expiry
(it sits in emails and in the inbox widget; rotate keys with SECRET_KEY_FALLBACKS), and it names
the client and the recipient: a token whose recipient no longer exists, or belongs to another
client, opens nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import time

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.urls import reverse

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


@dataclass(frozen=True)
class CategoryState:
    name: str
    enabled: bool
    critical: bool  # shown, always on, cannot be turned off


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
