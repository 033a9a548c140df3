"""Provider settings are declared once, in each provider's folder, and resolved by name: a
settings module, else the environment, else the declared default (providers/conf.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import notifyhub.settings.base as base_settings
from apps.notifications.providers.conf import declared, provider_setting, required_missing

DOCS = Path(__file__).resolve().parents[3] / "docs" / "providers.md"


def test_base_settings_keep_no_provider_block() -> None:
    assert [name for name in declared() if hasattr(base_settings, name)] == []


def test_the_environment_gives_a_value_typed_like_its_default(
    monkeypatch: pytest.MonkeyPatch, settings: Any,
) -> None:
    for name in ("TWILIO_TIMEOUT_SECONDS", "SMTP_USE_TLS", "SMTP_PORT", "VONAGE_SMS_FROM"):
        if hasattr(settings, name):
            delattr(settings, name)
    assert provider_setting("VONAGE_SMS_FROM") == "+15005550006"  # the declared default
    monkeypatch.setenv("TWILIO_TIMEOUT_SECONDS", "3.5")
    monkeypatch.setenv("SMTP_USE_TLS", "true")
    monkeypatch.setenv("SMTP_PORT", "587")
    monkeypatch.setenv("VONAGE_SMS_FROM", "NotifyHub")
    assert provider_setting("TWILIO_TIMEOUT_SECONDS") == 3.5
    assert provider_setting("SMTP_USE_TLS") is True
    assert provider_setting("SMTP_PORT") == 587
    assert provider_setting("VONAGE_SMS_FROM") == "NotifyHub"


def test_a_settings_module_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, settings: Any,
) -> None:
    monkeypatch.setenv("TWILIO_SMS_FROM", "+15550000001")
    settings.TWILIO_SMS_FROM = "+15550000002"
    assert provider_setting("TWILIO_SMS_FROM") == "+15550000002"


def test_test_mode_copies_default_to_the_sandbox(settings: Any) -> None:
    for name in ("TEST_MODE_TWILIO_API_BASE_URL", "TEST_MODE_SMTP_HOST"):
        if hasattr(settings, name):
            delattr(settings, name)
    settings.TEST_MODE_SANDBOX_URL = "http://sandbox.internal:8025"
    assert provider_setting("TEST_MODE_TWILIO_API_BASE_URL") == "http://sandbox.internal:8025"
    assert provider_setting("TEST_MODE_SMTP_HOST") == "sandbox.internal"


def test_production_defaults_are_the_real_hosts_and_secrets_are_required(
    settings: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.PROVIDER_SETTINGS_PROFILE = "production"
    for name in ("SENDGRID_API_HOST", "TWILIO_API_BASE_URL", "VONAGE_API_KEY"):
        if hasattr(settings, name):
            delattr(settings, name)
        monkeypatch.delenv(name, raising=False)
    assert provider_setting("SENDGRID_API_HOST") == "https://api.sendgrid.com"
    assert provider_setting("TWILIO_API_BASE_URL") == "https://api.twilio.com"
    assert provider_setting("VONAGE_API_KEY") == ""  # not offered without credentials
    assert required_missing({}) == ["SENDGRID_API_KEY", "SENDGRID_WEBHOOK_PUBLIC_KEY"]
    assert required_missing({"SENDGRID_API_KEY": "k", "SENDGRID_WEBHOOK_PUBLIC_KEY": "p"}) == []


def test_docs_name_every_live_provider_setting() -> None:
    text = DOCS.read_text()
    assert [n for n in declared() if not n.startswith("TEST_MODE_") and n not in text] == []


def test_no_code_reads_a_provider_setting_as_a_django_setting() -> None:
    """They are no Django settings any more (unless a settings module sets one): code reads
    them with provider_setting()."""
    root = DOCS.parents[1]
    names = "|".join(sorted(declared(), key=len, reverse=True))
    pattern = re.compile(rf"settings\.({names})\b|getattr\(settings, \"({names})\"")
    offenders = [f"{path.relative_to(root)}:{n}"
                 for folder in ("apps", "bench", "notifyhub", "sandbox")
                 for path in (root / folder).rglob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if pattern.search(line)]
    assert offenders == []
