"""channel → ordered providers. Adding a provider: a module here and one line in PROVIDERS."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from .base import Provider

PROVIDERS: dict[str, str] = {
    "sendgrid": "apps.notifications.channels.sendgrid.SendGridProvider",
    "smtp": "apps.notifications.channels.smtp.SmtpProvider",
    "twilio_sms": "apps.notifications.channels.twilio_messages.TwilioSmsProvider",
    "twilio_whatsapp": "apps.notifications.channels.twilio_messages.TwilioWhatsAppProvider",
    "fcm": "apps.notifications.channels.fcm.FcmProvider",
}


@cache
def get_provider(name: str) -> Provider:
    cls = import_string(PROVIDERS[name])
    return cls()  # type: ignore[no-any-return]


def providers_for(channel: str) -> list[Provider]:
    """The channel's configured providers, primary first (failover goes down the list)."""
    providers = (get_provider(name) for name in settings.CHANNEL_PROVIDERS.get(channel, []))
    return [p for p in providers if p.is_configured()]


def supported_channels() -> list[str]:
    return [c for c in settings.CHANNEL_PROVIDERS if providers_for(c)]


def reset_cache() -> None:
    get_provider.cache_clear()
