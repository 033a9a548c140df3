"""System checks (`manage.py check`, run by every management command and `check --deploy`).

Test mode must never reach a real provider: its endpoints point at a provider sandbox, and the
live credentials are never sent to that sandbox. What is checked comes from each provider's
declaration (apps/notifications/providers/<name>/settings.py): its real hosts, test-mode
endpoints and credentials."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from .providers.conf import TEST_MODE_PREFIX, provider_setting
from .providers.registry import declarations


def real_provider_domains() -> tuple[str, ...]:
    """Hosts of the real providers (and their subdomains), as their folders declare them."""
    return tuple(d for decl in declarations().values() for d in decl.real_hosts)


def test_mode_endpoints() -> tuple[str, ...]:
    return tuple(s for decl in declarations().values() for s in decl.test_mode_endpoints)


def shared_credentials() -> tuple[tuple[str, str, str], ...]:
    """(test-mode credential, live credential, live endpoint: empty means the SDK's real
    default), for every credential a provider declares."""
    return tuple((TEST_MODE_PREFIX + c, c, decl.endpoint)
                 for decl in declarations().values() for c in decl.credentials)


def _host(value: str) -> str:
    return (urlsplit(value).hostname if "//" in value else value.split(":")[0]) or ""


def is_real_provider_host(value: str) -> bool:
    host = _host(str(value)).lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in real_provider_domains())


def _token_uri(path: str) -> str:
    try:
        with open(path) as fh:
            return str(json.load(fh).get("token_uri", ""))
    except (OSError, ValueError, AttributeError):
        return ""


@register()
def check_test_mode_uses_a_sandbox(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name in test_mode_endpoints():
        value = str(provider_setting(name, "") or "")
        if value and is_real_provider_host(value):
            errors.append(Error(
                f"{name} points at a real provider ({_host(value)}).",
                hint="Test keys must only reach a provider sandbox (docs/providers.md, Test mode).",
                id="notifications.E001",
            ))
    for decl in declarations().values():
        name = decl.test_mode_service_account
        account_file = str(provider_setting(name, "") or "") if name else ""
        if account_file and is_real_provider_host(_token_uri(account_file)):
            errors.append(Error(
                f"{name}'s token_uri is the real provider's.",
                hint="Use a sandbox service account: python -m sandbox fcm-service-account.",
                id="notifications.E001",
            ))
    for test_name, live_name, live_endpoint in shared_credentials():
        secret = provider_setting(test_name, "")
        endpoint = str(provider_setting(live_endpoint, "") or "")
        if (secret and secret == provider_setting(live_name, "")
                and (not endpoint or is_real_provider_host(endpoint))):
            errors.append(Error(
                f"{test_name} is the live {live_name}: test mode would hand it to the sandbox.",
                hint="Give the test-mode sandbox its own credentials.",
                id="notifications.E002",
            ))
    return errors


@register()
def check_unreachable_breaker_below_max_attempts(app_configs: Any = None,
                                                 **kwargs: Any) -> list[CheckMessage]:
    """A provider that cannot be reached must open its breaker before a delivery runs out of
    attempts, or a long outage still dead-letters low-volume sends."""
    after = int(getattr(settings, "CIRCUIT_BREAKER", {}).get("unreachable_after", 0) or 0)
    if after and after >= settings.DELIVERY_MAX_ATTEMPTS:
        return [Warning(
            f"CIRCUIT_BREAKER['unreachable_after'] ({after}) is not below DELIVERY_MAX_ATTEMPTS "
            f"({settings.DELIVERY_MAX_ATTEMPTS}): an outage fails deliveries before the breaker "
            "opens.", hint="Lower BREAKER_UNREACHABLE_AFTER.", id="notifications.W001")]
    return []
