"""Fixtures every test folder shares: API clients, signing keys, the provider sandbox and a
real Celery worker. The sandbox and workers are real processes; nothing in the send path is
mocked."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from rest_framework.test import APIClient

from tests.factories import ClientFactory, TemplateFactory, api_key_for
from tests.support.processes import WorkerProcess, database_url
from tests.support.sandbox import SandboxProcess


@pytest.fixture(scope="session", autouse=True)
def _clean_test_broker() -> None:
    """Tests publish to their own Redis database; start each session with it empty."""
    url = settings.CELERY_BROKER_URL
    assert url.endswith("/15") or os.environ.get("TEST_REDIS_URL"), "tests must not use a shared broker DB"
    redis.Redis.from_url(url).flushdb()


@pytest.fixture(scope="session")
def webhook_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Any]:
    """An ECDSA P-256 key pair like SendGrid's: (private PEM path, base64 DER public, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path_factory.mktemp("keys") / "sendgrid.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )
    public = base64.b64encode(
        key.public_key().public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    ).decode()
    return path, public, key


@pytest.fixture(autouse=True)
def _sendgrid_public_key(settings: Any, webhook_keys: tuple[Path, str, Any]) -> None:
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = webhook_keys[1]
    settings.TEST_MODE_SENDGRID_WEBHOOK_PUBLIC_KEY = webhook_keys[1]


_UNSET = object()


def _sandbox_settings(process: SandboxProcess, live_server_url: str) -> dict[str, Any]:
    """NotifyHub settings that point every provider SDK at this sandbox, live and test mode
    alike (as `make run` does; tests of test mode move the live ones elsewhere)."""
    providers = {
        "SENDGRID_API_HOST": process.url,
        "TWILIO_API_BASE_URL": process.url,
        "TWILIO_ACCOUNT_SID": process.twilio_account_sid,
        "TWILIO_AUTH_TOKEN": process.twilio_auth_token,
        "VONAGE_API_BASE_URL": process.url,
        "FCM_API_BASE_URL": process.url,
        "FCM_SERVICE_ACCOUNT_FILE": process.fcm_service_account_file or "",
        "FCM_PROJECT_ID": process.fcm_project_id,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": process.smtp_port,
    }
    return {
        **providers,
        **{f"TEST_MODE_{name}": value for name, value in providers.items()},
        "PUBLIC_BASE_URL": live_server_url,
    }


@pytest.fixture(scope="session")
def sandbox(live_server: Any, webhook_keys: tuple[Path, str, Any]) -> Iterator[SandboxProcess]:
    """The provider sandbox (SendGrid, Twilio, FCM, SMTP), calling back this test session's
    live server; NotifyHub's settings point at it for the whole session."""
    with SandboxProcess(
        SANDBOX_SENDGRID_CALLBACK_URL=f"{live_server.url}/api/v1/webhooks/sendgrid",
        SANDBOX_SENDGRID_SIGNING_KEY_FILE=str(webhook_keys[0]),
        SANDBOX_TWILIO_STATUS_CALLBACK_URL=f"{live_server.url}/api/v1/webhooks/twilio",
        SANDBOX_TWILIO_INBOUND_URL=f"{live_server.url}/api/v1/webhooks/twilio/inbound",
        SANDBOX_VONAGE_STATUS_URL=f"{live_server.url}/api/v1/webhooks/vonage",
        SANDBOX_VONAGE_INBOUND_URL=f"{live_server.url}/api/v1/webhooks/vonage/inbound",
        SANDBOX_CALLBACK_INTERVAL_MS="100",
        SANDBOX_DELIVERED_DELAY_MS="50",
    ) as process:
        overrides = _sandbox_settings(process, live_server.url)
        # (provider settings are declared in their folders: most are no Django setting)
        previous = {name: getattr(settings, name, _UNSET) for name in overrides}
        for name, value in overrides.items():
            setattr(settings, name, value)
        try:
            yield process
        finally:
            for name, value in previous.items():
                if value is _UNSET:
                    delattr(settings, name)
                else:
                    setattr(settings, name, value)


def _reset_provider_gates() -> None:
    """Breakers and rate limits live in Redis: every test starts with them closed and full."""
    from apps.notifications import gate

    client = redis.Redis.from_url(settings.RESILIENCE_REDIS_URL)
    for pattern in ("notifyhub:cb:*", "notifyhub:rl:*"):
        keys = list(client.scan_iter(pattern))
        if keys:
            client.delete(*keys)
    gate.reset_caches()


@pytest.fixture
def clean_sandbox(sandbox: SandboxProcess) -> Iterator[SandboxProcess]:
    """The sandbox with no messages, failures or pending callbacks; reset again afterwards so
    a late callback cannot reach the live server during another test."""
    sandbox.reset()
    _reset_provider_gates()
    yield sandbox
    _let_callbacks_settle(sandbox)
    sandbox.reset()


def _let_callbacks_settle(sandbox: SandboxProcess, timeout: float = 3.0) -> None:
    """Wait until the sandbox has no callback buffered or in flight (twice in a row, so a
    delayed `delivered` has been queued and sent too): a callback still being applied by the
    live server while the test's tables are truncated can deadlock the truncate."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2 and time.monotonic() < deadline:
        quiet = quiet + 1 if sandbox.stats()["callbacks"]["pending"] == 0 else 0
        time.sleep(0.15)


@pytest.fixture
def worker_env(sandbox: SandboxProcess, webhook_keys: tuple[Path, str, Any]) -> dict[str, str]:
    """Environment for a worker process that shares this test's database, broker and sandbox."""
    from django.db import connection

    return {
        **os.environ,
        **{name: str(value) for name, value in _sandbox_settings(sandbox, settings.PUBLIC_BASE_URL).items()},
        "DJANGO_SETTINGS_MODULE": "notifyhub.settings.test",
        "DATABASE_URL": database_url(connection.settings_dict),
        "TEST_REDIS_URL": settings.CELERY_BROKER_URL,
        "SENDGRID_WEBHOOK_PUBLIC_KEY": webhook_keys[1],
        "TEST_MODE_SENDGRID_WEBHOOK_PUBLIC_KEY": webhook_keys[1],
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def start_worker(worker_env: dict[str, str]) -> Iterator[Any]:
    """Starts real Celery workers; all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(**kwargs: Any) -> WorkerProcess:
        env = {**worker_env, **kwargs.pop("env", {})}
        worker = WorkerProcess(env, **kwargs).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def client_tenant(db: None) -> Any:
    return ClientFactory()


@pytest.fixture
def api(client_tenant: Any) -> APIClient:
    """An API client authenticated as `client_tenant`."""
    api_client = APIClient()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(client_tenant)}")
    return api_client


@pytest.fixture
def email_template(client_tenant: Any) -> Any:
    return TemplateFactory(client=client_tenant, key="welcome")
