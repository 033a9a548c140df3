"""What a provider folder declares about itself, in its `settings.py` (no SDK imported): the
registry derives the provider list, the system checks, the rate-limit defaults, the URL routes
and the admin's provider choices from these declarations, so nothing about a provider is kept
by hand anywhere else."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Value.production: the same default as local development.
SAME: Any = object()
# Value.production: no default; the environment (or a settings module) must give it.
REQUIRED: Any = object()

# A default computed from other settings: called with the resolver (`name → value`).
Computed = Callable[[Callable[[str], Any]], Any]


@dataclass(frozen=True)
class Value:
    """One setting of a provider, declared in its folder's settings.py as `<SUFFIX>: Value(...)`
    and named by convention `<FOLDER>_<SUFFIX>` (SENDGRID_API_KEY): its value comes from a
    Django settings module if one sets it, else the environment variable of that name (typed
    like the default), else the default (apps/notifications/providers/conf.py)."""

    # Local development and tests: the sandbox. A Computed default reads other settings.
    default: Any = ""
    # Under production settings (PROVIDER_SETTINGS_PROFILE = "production"): a real host, or
    # REQUIRED (production refuses to start without it).
    production: Any = SAME
    # The test-mode copy TEST_MODE_<FOLDER>_<SUFFIX> (test API keys' sends: the sandbox):
    # its default, a Value of its own, or None for no copy.
    test_mode: Any = None


@dataclass(frozen=True)
class ProviderDeclaration:
    # provider name → (channel, class name in the folder's send.py); one folder may hold the
    # providers of several channels that share an account (Twilio: SMS and WhatsApp).
    senders: dict[str, tuple[str, str]]
    # Secret settings: test mode uses its own TEST_MODE_<NAME> copy, which must differ from the
    # live one when the live endpoint is the real provider (check notifications.E002).
    credentials: tuple[str, ...] = ()
    # The setting naming where live calls go (empty value: the SDK's real host).
    endpoint: str = ""
    # Test-mode settings that must point at a sandbox, never a real host (notifications.E001).
    test_mode_endpoints: tuple[str, ...] = ()
    # A test-mode service-account JSON whose `token_uri` must not be the real provider's.
    test_mode_service_account: str = ""
    # Domains of the real provider (and their subdomains).
    real_hosts: tuple[str, ...] = ()
    # provider name → default messages per second; `<NAME>_RATE_PER_SECOND` in the environment
    # or settings.PROVIDER_RATE_LIMITS[name] override it.
    rate_limits: dict[str, float] = field(default_factory=dict)
    # Whether the folder has a receipts.py with `urlpatterns` (under /api/v1/webhooks/).
    receipts: bool = False
    # Its settings: suffix → Value; `<FOLDER>_<SUFFIX>` is the setting and environment name.
    values: dict[str, Value] = field(default_factory=dict)

    def rate(self, name: str) -> float | None:
        default = self.rate_limits.get(name)
        if default is None:
            return None
        raw = os.environ.get(f"{name.upper()}_RATE_PER_SECOND", "").strip()
        return float(raw) if raw else float(default)


# One line per provider folder.
FOLDERS: tuple[str, ...] = ("sendgrid", "smtp", "twilio", "vonage", "fcm", "in_app")
PACKAGE = "apps.notifications.providers"


def declarations() -> dict[str, ProviderDeclaration]:
    """folder → its declaration (settings.py: neither Django nor an SDK is imported, so a
    settings module can read them too)."""
    global _DECLARATIONS
    if _DECLARATIONS is None:
        from importlib import import_module

        _DECLARATIONS = {folder: import_module(f"{PACKAGE}.{folder}.settings").DECLARATION
                         for folder in FOLDERS}
    return _DECLARATIONS


_DECLARATIONS: dict[str, ProviderDeclaration] | None = None


def sandbox_url(get: Callable[[str], Any]) -> Any:
    """A Computed default: the provider sandbox of test mode (TEST_MODE_SANDBOX_URL)."""
    return get("TEST_MODE_SANDBOX_URL")
