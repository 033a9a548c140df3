"""What the registry derives from the provider folders' declarations: nothing about a provider
is kept by hand anywhere else (routes, checks, rate limits, the admin's choices)."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from apps.notifications.checks import check_test_mode_uses_a_sandbox
from apps.notifications.providers.registry import (
    FOLDERS,
    declarations,
    default_rate,
    get_provider,
    names_for_channel,
    provider_choices,
)
from apps.notifications.resilience.ratelimit import TokenBucket


def test_every_declared_sender_is_a_provider_of_its_channel() -> None:
    for folder in FOLDERS:
        for name, (channel, _) in declarations()[folder].senders.items():
            provider = get_provider(name)
            assert (provider.name, provider.channel) == (name, channel)
            assert name in names_for_channel(channel)


def test_every_folder_with_receipts_has_its_routes() -> None:
    assert reverse("webhook-vonage") == "/api/v1/webhooks/vonage"
    assert reverse("webhook-test-vonage") == "/api/v1/webhooks/test/vonage"
    assert reverse("webhook-twilio-inbound") == "/api/v1/webhooks/twilio/inbound"
    assert reverse("webhook-sendgrid") == "/api/v1/webhooks/sendgrid"


def test_every_provider_has_a_rate_limit_without_a_settings_entry(settings: Any) -> None:
    """Every provider dispatch gates; a batched one (in-app: stored, never called) asks no
    gate and has no rate."""
    settings.PROVIDER_RATE_LIMITS = {}
    for folder in FOLDERS:
        for name in declarations()[folder].senders:
            if get_provider(name).batched:
                assert default_rate(name) is None
                continue
            assert TokenBucket.from_settings(f"{name}:default").rate_per_second == default_rate(name)


def test_a_rate_limit_can_be_overridden_from_the_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("VONAGE_SMS_RATE_PER_SECOND", "7")
    assert default_rate("vonage_sms") == 7


@pytest.mark.parametrize("setting", ["TEST_MODE_VONAGE_API_BASE_URL", "TEST_MODE_TWILIO_API_BASE_URL"])
def test_a_test_mode_endpoint_at_a_declared_real_host_is_refused(settings: Any, setting: str) -> None:
    setattr(settings, setting, "https://api.nexmo.com" if "VONAGE" in setting else "https://api.twilio.com")
    errors = check_test_mode_uses_a_sandbox()
    assert [e.id for e in errors] == ["notifications.E001"]
    assert setting in errors[0].msg


def test_a_test_mode_vonage_secret_equal_to_the_live_one_is_refused(settings: Any) -> None:
    settings.VONAGE_API_BASE_URL = ""  # the SDK's own host: the real Vonage
    settings.VONAGE_API_SECRET = settings.TEST_MODE_VONAGE_API_SECRET = "same"
    assert "notifications.E002" in [e.id for e in check_test_mode_uses_a_sandbox()]


def test_the_admin_lists_the_registered_providers() -> None:
    assert "sms: twilio_sms, vonage_sms" in provider_choices()
