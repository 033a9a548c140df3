"""The registry's test-mode providers: built from TEST_MODE_* settings only, their own gate
account, and `manage.py check` refuses a test mode that could reach a real provider."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from apps.notifications import gate
from apps.notifications.checks import check_test_mode_uses_a_sandbox
from apps.notifications.providers.registry import get_provider, providers_for, supported_channels


def test_test_mode_providers_read_only_test_mode_account_settings(settings: Any) -> None:
    settings.SENDGRID_API_HOST = "https://api.sendgrid.com"
    settings.SENDGRID_API_KEY = "SG.live"
    settings.TEST_MODE_SENDGRID_API_HOST = "http://sandbox.internal:8025"
    settings.TEST_MODE_SENDGRID_API_KEY = "sandbox-key"
    live, test = get_provider("sendgrid"), get_provider("sendgrid", "test")
    assert (live.setting("SENDGRID_API_HOST"), live.setting("SENDGRID_API_KEY")) == (
        "https://api.sendgrid.com", "SG.live")
    assert (test.setting("SENDGRID_API_HOST"), test.setting("SENDGRID_API_KEY")) == (
        "http://sandbox.internal:8025", "sandbox-key")
    # Settings that are not about the account are shared.
    assert test.setting("SENDGRID_TIMEOUT_SECONDS") == live.setting("SENDGRID_TIMEOUT_SECONDS")


@pytest.mark.parametrize(("channel", "setting"), [
    ("email", "TEST_MODE_SENDGRID_API_HOST"),
    ("sms", "TEST_MODE_TWILIO_API_BASE_URL"),
    ("whatsapp", "TEST_MODE_TWILIO_AUTH_TOKEN"),
    ("sms", "TEST_MODE_VONAGE_API_BASE_URL"),
    ("whatsapp", "TEST_MODE_VONAGE_API_SECRET"),
    ("push", "TEST_MODE_FCM_API_BASE_URL"),
])
def test_a_missing_test_mode_setting_never_falls_back_to_the_live_one(
    settings: Any, channel: str, setting: str
) -> None:
    settings.FCM_SERVICE_ACCOUNT_FILE = settings.TEST_MODE_FCM_SERVICE_ACCOUNT_FILE = "/sa.json"
    # One provider per channel: the one whose setting goes missing.
    one = {"TWILIO": {"sms": ["twilio_sms"], "whatsapp": ["twilio_whatsapp"]},
           "VONAGE": {"sms": ["vonage_sms"], "whatsapp": ["vonage_whatsapp"]}}
    settings.CHANNEL_PROVIDERS = {**settings.CHANNEL_PROVIDERS, "email": ["sendgrid"],
                                  **one.get(setting.split("_")[2], {})}
    assert channel in supported_channels(mode="test")
    setattr(settings, setting, "")
    assert channel not in supported_channels(mode="test")
    assert providers_for(channel, mode="test") == []
    assert channel in supported_channels()  # live is unaffected


def test_test_mode_has_its_own_breaker_and_rate_limit_account() -> None:
    assert gate.account_name(get_provider("twilio_sms")) == "twilio_sms:default"
    assert gate.account_name(get_provider("twilio_sms", "test")) == "twilio_sms:test"


def test_test_mode_twilio_callbacks_go_to_the_test_mode_receipt_url(settings: Any) -> None:
    from apps.notifications.providers.base import OutboundMessage

    message = OutboundMessage(delivery_id="d1", notification_id="n1", client_id="c1",
                              channel="sms", to="+14155550100", text="hi")
    live = get_provider("twilio_sms").build_payload(message)["status_callback"]
    test = get_provider("twilio_sms", "test").build_payload(message)["status_callback"]
    assert live == f"{settings.PUBLIC_BASE_URL}/api/v1/webhooks/twilio?delivery=d1"
    assert test == f"{settings.PUBLIC_BASE_URL}/api/v1/webhooks/test/twilio?delivery=d1"
    wa = get_provider("twilio_whatsapp", "test").build_payload(
        OutboundMessage(delivery_id="d2", notification_id="n1", client_id="c1", channel="whatsapp",
                        to="+14155550100", text="hi"))["status_callback"]
    assert wa.endswith("/api/v1/webhooks/test/whatsapp?delivery=d2")


def ids(settings: Any) -> list[str]:
    return [e.id for e in check_test_mode_uses_a_sandbox()]


def test_the_default_settings_pass_the_check(settings: Any) -> None:
    assert ids(settings) == []


@pytest.mark.parametrize(("name", "value"), [
    ("TEST_MODE_SENDGRID_API_HOST", "https://api.sendgrid.com"),
    ("TEST_MODE_TWILIO_API_BASE_URL", "https://api.twilio.com"),
    ("TEST_MODE_FCM_API_BASE_URL", "https://fcm.googleapis.com"),
    ("TEST_MODE_SMTP_HOST", "smtp.sendgrid.net"),
])
def test_a_real_provider_host_in_test_mode_is_an_error(settings: Any, name: str, value: str) -> None:
    setattr(settings, name, value)
    assert ids(settings) == ["notifications.E001"]


def test_a_real_fcm_service_account_in_test_mode_is_an_error(settings: Any, tmp_path: Path) -> None:
    account = tmp_path / "sa.json"
    account.write_text(json.dumps({"token_uri": "https://oauth2.googleapis.com/token"}))
    settings.TEST_MODE_FCM_SERVICE_ACCOUNT_FILE = str(account)
    assert ids(settings) == ["notifications.E001"]


def test_handing_the_live_credential_to_the_sandbox_is_an_error(settings: Any) -> None:
    settings.TWILIO_API_BASE_URL = "https://api.twilio.com"
    settings.TWILIO_AUTH_TOKEN = settings.TEST_MODE_TWILIO_AUTH_TOKEN = "real-token"
    assert ids(settings) == ["notifications.E002"]
