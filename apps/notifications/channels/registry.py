"""channel → ordered providers. Adding a provider: a module here and one line in PROVIDERS.

Every lookup takes a mode: "live" (the default) or "test", for deliveries of notifications
accepted with a test API key. Both modes use the same provider classes and CHANNEL_PROVIDERS;
a test-mode instance takes its endpoints and credentials from the TEST_MODE_* settings (the
provider sandbox), never from the live ones (channels/base.py)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from .base import LIVE, Provider

PROVIDERS: dict[str, str] = {
    "sendgrid": "apps.notifications.channels.sendgrid.SendGridProvider",
    "smtp": "apps.notifications.channels.smtp.SmtpProvider",
    "twilio_sms": "apps.notifications.channels.twilio_messages.TwilioSmsProvider",
    "twilio_whatsapp": "apps.notifications.channels.twilio_messages.TwilioWhatsAppProvider",
    "vonage_sms": "apps.notifications.channels.vonage_messages.VonageSmsProvider",
    "vonage_whatsapp": "apps.notifications.channels.vonage_messages.VonageWhatsAppProvider",
    "fcm": "apps.notifications.channels.fcm.FcmProvider",
}


@cache
def get_provider(name: str, mode: str = LIVE) -> Provider:
    cls = import_string(PROVIDERS[name])
    return cls(mode)  # type: ignore[no-any-return]


def channel_of(name: str) -> str:
    return str(import_string(PROVIDERS[name]).channel)


def provider_names(channel: str, order: Sequence[str] = ()) -> list[str]:
    """The channel's provider names, primary first: `order` (a client's, from the admin)
    first, then the rest of CHANNEL_PROVIDERS in its order."""
    default = list(settings.CHANNEL_PROVIDERS.get(channel, []))
    chosen = [n for n in order if n in PROVIDERS and channel_of(n) == channel]
    return list(dict.fromkeys([*chosen, *default]))


def providers_for(channel: str, *, mode: str = LIVE, order: Sequence[str] = ()) -> list[Provider]:
    """The channel's configured providers for this mode, primary first (failover goes down
    the list); `order` puts a client's preferred providers first."""
    providers = (get_provider(name, mode) for name in provider_names(channel, order))
    return [p for p in providers if p.is_configured()]


def client_order(provider_order: Any, channel: str) -> tuple[str, ...]:
    """A client's provider order for a channel (`Client.provider_order`), () when none."""
    if not isinstance(provider_order, dict):
        return ()
    names = provider_order.get(channel)
    return tuple(str(n) for n in names) if isinstance(names, list) else ()


def validate_provider_order(value: Any) -> list[str]:
    """Problems with a `Client.provider_order` value ({} is fine)."""
    if not isinstance(value, dict):
        return ['Must be an object: {"sms": ["vonage_sms", "twilio_sms"]}.']
    problems = []
    for channel, names in value.items():
        offered = [n for n in PROVIDERS if channel_of(n) == channel]
        if not offered:
            problems.append(f"Unknown channel '{channel}'.")
        elif not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            problems.append(f"'{channel}' must be a list of provider names.")
        else:
            unknown = [n for n in names if n not in offered]
            if unknown:
                problems.append(f"'{channel}': unknown provider(s) {', '.join(unknown)}; "
                                f"choose from {', '.join(offered)}.")
    return problems


def supported_channels(*, mode: str = LIVE) -> list[str]:
    return [c for c in settings.CHANNEL_PROVIDERS if providers_for(c, mode=mode)]


def reset_cache() -> None:
    get_provider.cache_clear()
