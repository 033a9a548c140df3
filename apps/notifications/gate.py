"""Provider admission: the circuit breaker and the rate limit of each provider account,
shared by every worker through Redis. Dispatch asks before every provider call."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache

from django.conf import settings

from .channels.base import Provider, SendResult
from .resilience.breaker import CircuitBreaker, Decision
from .resilience.ratelimit import TokenBucket

logger = logging.getLogger(__name__)


def account_name(provider: Provider) -> str:
    # One live account per provider ("default") and the test-mode sandbox account ("test"),
    # so a test key's sends never trip or throttle the live provider; per-client accounts
    # would extend this name.
    return f"{provider.name}:{provider.account}"


@cache
def breaker_for(name: str) -> CircuitBreaker:
    return CircuitBreaker.from_settings(name)  # it logs its own state changes


@cache
def bucket_for(name: str) -> TokenBucket:
    return TokenBucket.from_settings(name)


@dataclass(frozen=True)
class Admission:
    allowed: bool
    decision: Decision | None = None
    wait_seconds: float = 0.0
    reason: str = ""  # circuit_open / rate_limited


def admit(provider: Provider, cost: int = 1) -> Admission:
    """May we call this provider now for `cost` messages? Never blocks or sleeps."""
    if not settings.PROVIDER_GATES_ENABLED:
        return Admission(True)
    name = account_name(provider)
    decision = breaker_for(name).allow()
    if not decision.allowed:
        return Admission(False, decision, decision.retry_after or 1.0, "circuit_open")
    grant = bucket_for(name).acquire_all_or_nothing(cost)
    if not grant.complete:
        return Admission(False, decision, max(grant.wait_seconds, 0.001), "rate_limited")
    return Admission(True, decision)


def report(provider: Provider, admission: Admission, result: SendResult) -> None:
    if not settings.PROVIDER_GATES_ENABLED:
        return
    breaker = breaker_for(account_name(provider))
    if result.counts_against_provider:
        breaker.record_failure(admission.decision)
    else:
        breaker.record_success(admission.decision)


def rate_per_second(provider: Provider) -> float:
    return bucket_for(account_name(provider)).rate_per_second


def reset_caches() -> None:
    breaker_for.cache_clear()
    bucket_for.cache_clear()
