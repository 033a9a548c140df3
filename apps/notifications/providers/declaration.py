"""What a provider folder declares about itself, in its `settings.py` (no SDK imported): the
registry derives the provider list, the system checks, the rate-limit defaults, the URL routes
and the admin's provider choices from these declarations, so nothing about a provider is kept
by hand anywhere else."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


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

    def rate(self, name: str) -> float | None:
        default = self.rate_limits.get(name)
        if default is None:
            return None
        raw = os.environ.get(f"{name.upper()}_RATE_PER_SECOND", "").strip()
        return float(raw) if raw else float(default)
