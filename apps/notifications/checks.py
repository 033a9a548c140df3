"""System checks (`manage.py check`, run by every management command and `check --deploy`).

Test mode must never reach a real provider: its endpoints point at a provider sandbox, and the
live credentials are never sent to that sandbox."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

# Hosts of the real providers (and their subdomains).
REAL_PROVIDER_DOMAINS = ("sendgrid.com", "sendgrid.net", "twilio.com", "googleapis.com",
                         "google.com", "nexmo.com", "vonage.com")
TEST_MODE_ENDPOINTS = ("TEST_MODE_SENDGRID_API_HOST", "TEST_MODE_TWILIO_API_BASE_URL",
                       "TEST_MODE_FCM_API_BASE_URL", "TEST_MODE_SMTP_HOST",
                       "TEST_MODE_VONAGE_API_BASE_URL")
# (test-mode credential, live credential, live endpoint: empty means the SDK's real default)
SHARED_CREDENTIALS = (
    ("TEST_MODE_SENDGRID_API_KEY", "SENDGRID_API_KEY", "SENDGRID_API_HOST"),
    ("TEST_MODE_TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN", "TWILIO_API_BASE_URL"),
    ("TEST_MODE_VONAGE_API_SECRET", "VONAGE_API_SECRET", "VONAGE_API_BASE_URL"),
)


def _host(value: str) -> str:
    return (urlsplit(value).hostname if "//" in value else value.split(":")[0]) or ""


def is_real_provider_host(value: str) -> bool:
    host = _host(str(value)).lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in REAL_PROVIDER_DOMAINS)


def _token_uri(path: str) -> str:
    try:
        with open(path) as fh:
            return str(json.load(fh).get("token_uri", ""))
    except (OSError, ValueError, AttributeError):
        return ""


@register()
def check_test_mode_uses_a_sandbox(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name in TEST_MODE_ENDPOINTS:
        value = str(getattr(settings, name, "") or "")
        if value and is_real_provider_host(value):
            errors.append(Error(
                f"{name} points at a real provider ({_host(value)}).",
                hint="Test keys must only reach a provider sandbox (docs/providers.md, Test mode).",
                id="notifications.E001",
            ))
    account_file = str(getattr(settings, "TEST_MODE_FCM_SERVICE_ACCOUNT_FILE", "") or "")
    if account_file and is_real_provider_host(_token_uri(account_file)):
        errors.append(Error(
            "TEST_MODE_FCM_SERVICE_ACCOUNT_FILE's token_uri is Google's.",
            hint="Use a sandbox service account: python -m sandbox fcm-service-account.",
            id="notifications.E001",
        ))
    for test_name, live_name, live_endpoint in SHARED_CREDENTIALS:
        secret = getattr(settings, test_name, "")
        endpoint = str(getattr(settings, live_endpoint, "") or "")
        if (secret and secret == getattr(settings, live_name, "")
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
