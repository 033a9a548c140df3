"""The providers and channel → ordered providers.

Adding a provider: its folder (`apps/notifications/providers/<folder>/`: send.py, settings.py
with its DECLARATION, receipts.py if it calls back) and its folder's name in FOLDERS
(declaration.py). Everything else about it (the provider list, URL routes, system checks,
rate-limit defaults, the admin's choices, its setting values: conf.py) is derived from the
declarations.

Every lookup takes a mode: "live" (the default) or "test", for deliveries of notifications
accepted with a test API key. Both modes use the same provider classes and CHANNEL_PROVIDERS;
a test-mode instance takes its endpoints and credentials from the TEST_MODE_* settings (the
provider sandbox), never from the live ones (providers/base.py)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from .base import LIVE, Provider
from .declaration import FOLDERS, PACKAGE, ProviderDeclaration, declarations

__all__ = ["FOLDERS", "PACKAGE", "ProviderDeclaration", "declarations"]


@cache
def _senders() -> dict[str, tuple[str, str, str]]:
    """provider name → (folder, channel, dotted class path)."""
    out: dict[str, tuple[str, str, str]] = {}
    for folder, declaration in declarations().items():
        for name, (channel, cls) in declaration.senders.items():
            out[name] = (folder, channel, f"{PACKAGE}.{folder}.send.{cls}")
    return out


def provider_classes() -> dict[str, str]:
    return {name: path for name, (_, _, path) in _senders().items()}


def default_rate(name: str) -> float | None:
    """The declared rate limit of provider `name` (messages/s), None for an unknown name."""
    sender = _senders().get(name)
    return declarations()[sender[0]].rate(name) if sender else None


@cache
def get_provider(name: str, mode: str = LIVE) -> Provider:
    cls = import_string(_senders()[name][2])
    return cls(mode)  # type: ignore[no-any-return]


def channel_of(name: str) -> str:
    return _senders()[name][1]


def provider_choices() -> str:
    """Every registered provider by channel, for the admin ("sms: twilio_sms, vonage_sms; …")."""
    channels: dict[str, list[str]] = {}
    for name, (_, channel, _) in _senders().items():
        channels.setdefault(channel, []).append(name)
    return "; ".join(f"{c}: {', '.join(names)}" for c, names in channels.items())


def names_for_channel(channel: str) -> list[str]:
    """Every registered provider of a channel (the admin's choices), registry order."""
    return [name for name, (_, c, _) in _senders().items() if c == channel]


def provider_names(channel: str, order: Sequence[str] = ()) -> list[str]:
    """The channel's provider names, primary first: `order` (a client's, from the admin)
    first, then the rest of CHANNEL_PROVIDERS in its order."""
    default = list(settings.CHANNEL_PROVIDERS.get(channel, []))
    chosen = [n for n in order if n in _senders() and channel_of(n) == channel]
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
        offered = names_for_channel(channel)
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


# The channels some configured provider offers, per mode: asked by every send (a dozen setting
# look-ups through providers/conf.py, ~0.2 ms), and only settings change it. Provider settings
# come from Django settings and the environment, both fixed for a process's life; a changed
# Django setting (tests, `override_settings`) empties it.
_supported: dict[str, tuple[str, ...]] = {}


def supported_channels(*, mode: str = LIVE) -> list[str]:
    channels = _supported.get(mode)
    if channels is None:
        channels = _supported[mode] = tuple(c for c in settings.CHANNEL_PROVIDERS
                                            if providers_for(c, mode=mode))
    return list(channels)


@receiver(setting_changed)
def _settings_changed(**kwargs: Any) -> None:
    _supported.clear()


def reset_cache() -> None:
    get_provider.cache_clear()
    _supported.clear()
