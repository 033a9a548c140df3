"""Production settings pass `manage.py check --deploy` with no warning, given only the
environment variables production requires, and make the staff second factor mandatory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "notifyhub.settings.production",
    "SECRET_KEY": "dummy-but-long-and-varied-" + "k3Y_9fQ2-xZ7pL0w" * 4,
    "SENDGRID_API_KEY": "SG.dummy",
    "SENDGRID_WEBHOOK_PUBLIC_KEY": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEdummy",
    "PUBLIC_BASE_URL": "https://notifyhub.example.com",
    "ALLOWED_HOSTS": "notifyhub.example.com",
    # Production refuses the development PII keys (apps/core/crypto.py).
    "PII_ENCRYPTION_KEYS": "q0DKB4gCrmGNKNgEJiY1AwM9HnbtJ6MPQUhmSr2Ni8M=",
    "PII_HASH_KEY": "a-test-only-hash-key-of-at-least-32-characters",
}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DEBUG", "ADMIN_REQUIRE_OTP", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS")}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env={**env, **PRODUCTION_ENV},
                          capture_output=True, text=True, timeout=120, check=False)


def test_check_deploy_reports_no_issues() -> None:
    result = run("manage.py", "check", "--deploy", "--fail-level", "WARNING")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output


def test_production_requires_the_second_factor_for_staff() -> None:
    result = run("-c", "import django; django.setup(); from django.conf import settings; "
                       "from django.utils.module_loading import import_string; "
                       "from django_otp.middleware import OTPMiddleware; "
                       "print(settings.ADMIN_REQUIRE_OTP, settings.DEBUG, any(issubclass("
                       "import_string(m), OTPMiddleware) for m in settings.MIDDLEWARE))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "True"]
