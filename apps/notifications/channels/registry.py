"""channel → ordered providers. Adding a provider: a module here and one line in PROVIDERS."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from .base import Provider

PROVIDERS: dict[str, str] = {
    "sendgrid": "apps.notifications.channels.sendgrid.SendGridProvider",
}


@cache
def get_provider(name: str) -> Provider:
    cls = import_string(PROVIDERS[name])
    return cls()  # type: ignore[no-any-return]


def providers_for(channel: str) -> list[Provider]:
    return [get_provider(name) for name in settings.CHANNEL_PROVIDERS.get(channel, [])]


def supported_channels() -> list[str]:
    return [c for c, names in settings.CHANNEL_PROVIDERS.items() if names]


def reset_cache() -> None:
    get_provider.cache_clear()
