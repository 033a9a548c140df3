"""What the SMS and push phases send: their templates, recipients (distinct phone numbers the
sandbox delivers; recipients with one registered device each) and the provider rate limit each
phase runs under. The phone numbers and device tokens need nothing; the rest needs Django set
up (imported lazily)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SMS_TEMPLATE_KEY = "bench_sms"
PUSH_TEMPLATE_KEY = "bench_push"
# The provider (and so its rate limit's account) each phase sends through, with the
# environment variable that sets that rate limit (notifyhub/settings/base.py).
SMS_PROVIDER = "twilio_sms"
PUSH_PROVIDER = "fcm"
SMS_RATE_ENV = "TWILIO_SMS_RATE_PER_SECOND"
PUSH_RATE_ENV = "FCM_RATE_PER_SECOND"

# Numbers the sandbox answers with an error on purpose: Twilio's magic test numbers
# (+1500555xxxx, refused at the API) and the trailing digits of its asynchronous failures
# (sandbox/twilio.py: SMS_OUTCOMES, WHATSAPP_OUTCOMES).
MAGIC_PREFIX = "+1500555"
FAILING_SUFFIXES = ("3003", "3006", "3008", "63014", "63016")
_FIRST_NUMBER = 14_157_000_000  # +1 415 700 0000 onwards
_MAX_E164_DIGITS = 15
# Device tokens the sandbox answers with an FCM error, by prefix (sandbox/fcm.py).
RESERVED_TOKEN_PREFIXES = ("unregistered", "invalid", "quota", "unavailable", "internal", "mismatch")


def phone_numbers(count: int) -> list[str]:
    """`count` distinct E.164 numbers the sandbox sends to and reports delivered."""
    return list(_deliverable_numbers(count))


def _deliverable_numbers(count: int) -> Iterator[str]:
    number = _FIRST_NUMBER
    produced = 0
    while produced < count:
        text = f"+{number}"
        number += 1
        if text.startswith(MAGIC_PREFIX) or text.endswith(FAILING_SUFFIXES):
            continue
        if len(text) - 1 > _MAX_E164_DIGITS:
            raise ValueError(f"cannot make {count} distinct E.164 numbers")
        produced += 1
        yield text


def sms_recipients(prefix: str, count: int) -> list[dict[str, str]]:
    """Inline recipients for the send API, each with its own phone number."""
    return [{"id": f"{prefix}{i}", "phone": phone}
            for i, phone in enumerate(phone_numbers(count))]


def device_token(index: int) -> str:
    """A registration token shaped like FCM's (about 160 characters), unique per device."""
    token = f"bench{index:07d}:APA91b{secrets.token_urlsafe(108)}"
    assert not token.lower().startswith(RESERVED_TOKEN_PREFIXES)
    return token


def create_templates(client: Any) -> None:
    """One template per channel, so each phase sends exactly one delivery per recipient."""
    from apps.templates.services import template_create, template_version_create

    sms = template_create(client=client, key=SMS_TEMPLATE_KEY, name="Bench SMS", channels=["sms"])
    template_version_create(template=sms, sms_body="Hi {{ name }}, this is {{ recipient.id }}.")
    push = template_create(client=client, key=PUSH_TEMPLATE_KEY, name="Bench push", channels=["push"])
    template_version_create(template=push, push_title="Hello {{ name }}",
                            push_body="Hi {{ name }}, this is {{ recipient.id }}.")


def create_push_recipients(client: Any, prefix: str, count: int) -> list[str]:
    """`count` recipients with one active Android device each, in bulk (a few statements, not
    timed: registering devices is not part of sending). Returns their external ids."""
    from django.db import transaction

    from apps.recipients.models import Device, DevicePlatform
    from apps.recipients.services import recipients_upsert

    ids = [f"{prefix}{i}" for i in range(count)]
    with transaction.atomic():
        recipients = recipients_upsert(client=client, items=[{"id": i} for i in ids])
        Device.objects.bulk_create(
            [Device(client=client, recipient=recipients[external_id], token=device_token(i),
                    platform=DevicePlatform.ANDROID)
             for i, external_id in enumerate(ids)],
            batch_size=2000,
        )
    return ids


@dataclass(frozen=True)
class RateLimit:
    """The rate limit a phase's worker applies to its provider, as the worker computes it."""

    provider: str
    env_var: str
    per_second: float
    burst: int
    source: str  # the command-line flag, or "settings" (PROVIDER_RATE_LIMITS)

    def worker_env(self) -> dict[str, str]:
        return {} if self.source == "settings" else {self.env_var: repr(self.per_second)}

    def report(self) -> dict[str, Any]:
        from django.conf import settings

        return {
            "rate_limit_per_second": self.per_second,
            "rate_limit_burst": self.burst,
            "rate_limit_source": self.source,
            "rate_limit_setting": self.env_var,
            # False: the worker calls providers without asking the rate limit at all.
            "provider_gates_enabled": settings.PROVIDER_GATES_ENABLED,
        }


def rate_limit(provider: str, env_var: str, flag: str, override: float | None) -> RateLimit:
    """The configured rate (settings, or `override` from `flag`) and the bucket's burst, from
    the same code the worker's gate uses (apps.notifications.resilience.ratelimit)."""
    from apps.notifications.resilience.ratelimit import TokenBucket

    options = {} if override is None else {"rate_per_second": float(override)}
    bucket = TokenBucket.from_settings(f"{provider}:default", **options)
    return RateLimit(provider=provider, env_var=env_var, per_second=bucket.rate_per_second,
                     burst=bucket.burst, source="settings" if override is None else flag)
