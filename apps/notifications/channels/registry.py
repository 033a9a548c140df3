"""channel → ordered providers. Adding a provider: a module here and one line in PROVIDERS.

Every lookup takes a mode: "live" (the default) or "test", for deliveries of notifications
accepted with a test API key. Both modes use the same provider classes and CHANNEL_PROVIDERS;
a test-mode instance takes its endpoints and credentials from the TEST_MODE_* settings (the
provider sandbox), never from the live ones (channels/base.py)."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from .base import LIVE, Provider

PROVIDERS: dict[str, str] = {
    "sendgrid": "apps.notifications.channels.sendgrid.SendGridProvider",
    "smtp": "apps.notifications.channels.smtp.SmtpProvider",
    "twilio_sms": "apps.notifications.channels.twilio_messages.TwilioSmsProvider",
    "twilio_whatsapp": "apps.notifications.channels.twilio_messages.TwilioWhatsAppProvider",
    "fcm": "apps.notifications.channels.fcm.FcmProvider",
}


@cache
def get_provider(name: str, mode: str = LIVE) -> Provider:
    cls = import_string(PROVIDERS[name])
    return cls(mode)  # type: ignore[no-any-return]


def providers_for(channel: str, *, mode: str = LIVE) -> list[Provider]:
    """The channel's configured providers for this mode, primary first (failover goes down
    the list)."""
    providers = (get_provider(name, mode) for name in settings.CHANNEL_PROVIDERS.get(channel, []))
    return [p for p in providers if p.is_configured()]


def supported_channels(*, mode: str = LIVE) -> list[str]:
    return [c for c in settings.CHANNEL_PROVIDERS if providers_for(c, mode=mode)]


def reset_cache() -> None:
    get_provider.cache_clear()
