"""Sandbox configuration, read from the environment and overridable from the CLI."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

DEFAULT_SENDGRID_CALLBACK_URL = "http://127.0.0.1:8000/api/v1/webhooks/sendgrid"
DEFAULT_TWILIO_STATUS_CALLBACK_URL = "http://127.0.0.1:8000/api/v1/webhooks/twilio"
DEFAULT_TWILIO_INBOUND_URL = "http://127.0.0.1:8000/api/v1/webhooks/twilio/inbound"
DEFAULT_VONAGE_STATUS_URL = "http://127.0.0.1:8000/api/v1/webhooks/vonage"
DEFAULT_VONAGE_INBOUND_URL = "http://127.0.0.1:8000/api/v1/webhooks/vonage/inbound"
# Twilio's documented format: "AC" + 32 hex digits (the SDK does not check it).
DEFAULT_TWILIO_ACCOUNT_SID = "AC" + "0" * 32


class ConfigError(ValueError):
    """Raised when an environment variable holds an unusable value."""


def _env_int(environ: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 8025
    log_level: str = "INFO"

    # SendGrid
    sendgrid_api_key: str = "sandbox-sendgrid-key"
    # PEM private key used to sign Event Webhook batches; None -> ephemeral key.
    sendgrid_signing_key_file: str | None = None
    # Empty string disables SendGrid callbacks.
    sendgrid_callback_url: str = DEFAULT_SENDGRID_CALLBACK_URL

    # Twilio Messages (SMS, WhatsApp)
    twilio_account_sid: str = DEFAULT_TWILIO_ACCOUNT_SID
    twilio_auth_token: str = "sandbox-twilio-token"  # noqa: S105 - public sandbox default
    # Used when a message has no StatusCallback; empty string disables.
    twilio_status_callback_url: str = DEFAULT_TWILIO_STATUS_CALLBACK_URL
    twilio_inbound_url: str = DEFAULT_TWILIO_INBOUND_URL

    # Vonage Messages API (SMS, WhatsApp): Basic auth with the key and secret; webhooks are
    # signed with the signature secret (JWT HS256).
    vonage_api_key: str = "sandbox-vonage-key"
    vonage_api_secret: str = "sandbox-vonage-secret"  # noqa: S105 - public sandbox default
    vonage_signature_secret: str = "sandbox-vonage-signature-secret-0000"  # noqa: S105
    # Used when a message has no webhook_url; empty string disables.
    vonage_status_url: str = DEFAULT_VONAGE_STATUS_URL
    vonage_inbound_url: str = DEFAULT_VONAGE_INBOUND_URL

    # FCM HTTP v1: service-account JSON whose public key verifies token assertions;
    # None -> any well-formed assertion is accepted (with a warning).
    fcm_service_account_file: str | None = None
    fcm_token_ttl_s: int = 3600

    # SMTP server in the same process; 0 disables it.
    smtp_port: int = 2525

    # How long a request is held when a provider is set to ``timeout``.
    timeout_hold_s: int = 60

    # Callback dispatcher (shared by all providers)
    callback_interval_ms: int = 200
    callback_max_batch: int = 500

    # Delay between `processed` and `delivered`/`bounce` events.
    delivered_delay_ms: int = 100

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> SandboxConfig:
        """Build a config from ``SANDBOX_*`` variables; ``overrides`` that are not None win."""
        env = os.environ if environ is None else environ
        defaults = cls()
        config = cls(
            host=env.get("SANDBOX_HOST") or defaults.host,
            port=_env_int(env, "SANDBOX_PORT", defaults.port),
            log_level=(env.get("SANDBOX_LOG_LEVEL") or defaults.log_level).upper(),
            sendgrid_api_key=env.get("SANDBOX_SENDGRID_API_KEY") or defaults.sendgrid_api_key,
            sendgrid_signing_key_file=env.get("SANDBOX_SENDGRID_SIGNING_KEY_FILE") or None,
            # Distinguish "unset" (default URL) from "set to empty" (disabled).
            sendgrid_callback_url=env.get(
                "SANDBOX_SENDGRID_CALLBACK_URL", defaults.sendgrid_callback_url
            ).strip(),
            twilio_account_sid=env.get("SANDBOX_TWILIO_ACCOUNT_SID") or defaults.twilio_account_sid,
            twilio_auth_token=env.get("SANDBOX_TWILIO_AUTH_TOKEN") or defaults.twilio_auth_token,
            twilio_status_callback_url=env.get(
                "SANDBOX_TWILIO_STATUS_CALLBACK_URL", defaults.twilio_status_callback_url
            ).strip(),
            twilio_inbound_url=(
                env.get("SANDBOX_TWILIO_INBOUND_URL") or defaults.twilio_inbound_url
            ).strip(),
            vonage_api_key=env.get("SANDBOX_VONAGE_API_KEY") or defaults.vonage_api_key,
            vonage_api_secret=env.get("SANDBOX_VONAGE_API_SECRET") or defaults.vonage_api_secret,
            vonage_signature_secret=(env.get("SANDBOX_VONAGE_SIGNATURE_SECRET")
                                     or defaults.vonage_signature_secret),
            vonage_status_url=env.get("SANDBOX_VONAGE_STATUS_URL",
                                      defaults.vonage_status_url).strip(),
            vonage_inbound_url=(env.get("SANDBOX_VONAGE_INBOUND_URL")
                                or defaults.vonage_inbound_url).strip(),
            fcm_service_account_file=env.get("SANDBOX_FCM_SERVICE_ACCOUNT_FILE") or None,
            fcm_token_ttl_s=_env_int(env, "SANDBOX_FCM_TOKEN_TTL_S", defaults.fcm_token_ttl_s, minimum=1),
            smtp_port=_env_int(env, "SANDBOX_SMTP_PORT", defaults.smtp_port),
            timeout_hold_s=_env_int(env, "SANDBOX_TIMEOUT_HOLD_S", defaults.timeout_hold_s, minimum=1),
            callback_interval_ms=_env_int(
                env, "SANDBOX_CALLBACK_INTERVAL_MS", defaults.callback_interval_ms, minimum=1
            ),
            callback_max_batch=_env_int(
                env, "SANDBOX_CALLBACK_MAX_BATCH", defaults.callback_max_batch, minimum=1
            ),
            delivered_delay_ms=_env_int(env, "SANDBOX_DELIVERED_DELAY_MS", defaults.delivered_delay_ms),
        )
        return config.with_overrides(**overrides)

    def with_overrides(self, **overrides: Any) -> SandboxConfig:
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def callback_interval(self) -> float:
        return self.callback_interval_ms / 1000.0

    @property
    def delivered_delay(self) -> float:
        return self.delivered_delay_ms / 1000.0
