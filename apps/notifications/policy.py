"""Retry policy: seed 000's numbers by default, configurable per channel (settings) and per
client and channel (`Client.delivery_policy`, edited in the admin)."""

from __future__ import annotations

import random
from dataclasses import dataclass, fields, replace
from typing import Any

from django.conf import settings


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_seconds: float = 1.0
    max_seconds: float = 300.0
    jitter: float = 0.25  # ± fraction

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Delay before attempt `attempt + 1`: initial * 2^(attempt-1), capped, ± jitter,
        never shorter than what the provider asked for (and never above the cap, which stays
        below the broker's visibility timeout)."""
        base = min(self.max_seconds, self.initial_seconds * 2 ** max(attempt - 1, 0))
        delay = base * random.uniform(1 - self.jitter, 1 + self.jitter)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return float(min(delay, self.max_seconds))


_KEYS = {f.name for f in fields(RetryPolicy)}


def _apply(policy: RetryPolicy, overrides: Any) -> RetryPolicy:
    if not isinstance(overrides, dict):
        return policy
    return replace(policy, **{k: type(getattr(policy, k))(v) for k, v in overrides.items() if k in _KEYS})


def validate_overrides(value: Any) -> list[str]:
    """Problems with a `Client.delivery_policy` value ({} is fine)."""
    if not isinstance(value, dict):
        return ["Must be an object: {\"*\": {...}, \"sms\": {...}}."]
    problems = []
    for scope, overrides in value.items():
        if scope not in ("*", "email", "sms", "whatsapp", "push", "in_app"):
            problems.append(f"Unknown channel '{scope}'.")
        elif not isinstance(overrides, dict) or set(overrides) - _KEYS:
            problems.append(f"'{scope}' may set only: {', '.join(sorted(_KEYS))}.")
        else:
            try:
                policy = _apply(RetryPolicy(), overrides)
            except (TypeError, ValueError):
                problems.append(f"'{scope}' has a value that is not a number.")
                continue
            if policy.max_attempts < 1 or policy.initial_seconds <= 0 or not 0 <= policy.jitter < 1:
                problems.append(f"'{scope}': max_attempts ≥ 1, initial_seconds > 0, 0 ≤ jitter < 1.")
            elif policy.max_seconds > settings.CELERY_BROKER_VISIBILITY_TIMEOUT / 2:
                problems.append(f"'{scope}': max_seconds must stay below half the broker's "
                                "visibility timeout.")
    return problems


def retry_policy(*, channel: str, client_overrides: Any = None) -> RetryPolicy:
    """Defaults ← settings (RETRY_*) ← RETRY_POLICY_BY_CHANNEL[channel] ← the client's '*' ←
    the client's channel entry."""
    policy = RetryPolicy(
        max_attempts=settings.DELIVERY_MAX_ATTEMPTS,
        initial_seconds=settings.RETRY_INITIAL_SECONDS,
        max_seconds=settings.RETRY_MAX_SECONDS,
        jitter=settings.RETRY_JITTER,
    )
    policy = _apply(policy, settings.RETRY_POLICY_BY_CHANNEL.get(channel))
    if isinstance(client_overrides, dict):
        policy = _apply(policy, client_overrides.get("*"))
        policy = _apply(policy, client_overrides.get(channel))
    return policy
