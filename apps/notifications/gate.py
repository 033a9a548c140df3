"""Provider admission: the circuit breaker and the rate limit of each provider account,
shared by every worker through Redis. Dispatch asks before every provider call."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache

from django.conf import settings

from .providers.base import Provider, SendResult
from .resilience.breaker import CLOSED, OPEN, UNKNOWN, CircuitBreaker, Decision
from .resilience.ratelimit import Booking, TokenBucket

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


class Prepaid:
    """Tokens a deferred chunk booked before it was deferred (`reserve`), per provider
    account: spent instead of asking the bucket again. Shared by the sender threads."""

    def __init__(self, tokens: dict[str, int] | None = None) -> None:
        self.tokens = {name: int(n) for name, n in (tokens or {}).items() if int(n) > 0}
        self.lock = threading.Lock()

    def take(self, name: str, cost: int) -> bool:
        with self.lock:
            if self.tokens.get(name, 0) < cost:
                return False
            self.tokens[name] -= cost
            return True

    def take_up_to(self, name: str, count: int) -> int:
        with self.lock:
            taken = min(self.tokens.get(name, 0), count)
            if taken:
                self.tokens[name] -= taken
            return taken


def admit(provider: Provider, cost: int = 1, prepaid: Prepaid | None = None) -> Admission:
    """May we call this provider now for `cost` messages? Never blocks or sleeps. Tokens the
    work booked before its deferral (`prepaid`) are spent before the bucket is asked."""
    if not settings.PROVIDER_GATES_ENABLED:
        return Admission(True)
    name = account_name(provider)
    breaker = breaker_for(name)
    decision = breaker.allow()
    if not decision.allowed:
        return Admission(False, decision, decision.retry_after or 1.0, "circuit_open")
    if prepaid is not None and prepaid.take(name, cost):
        return Admission(True, decision)
    grant = bucket_for(name).acquire_all_or_nothing(cost)
    if not grant.complete:
        if decision.is_probe:
            breaker.release(decision)  # no call made: the probe slot goes to the next caller
        return Admission(False, decision, max(grant.wait_seconds, 0.001), "rate_limited")
    return Admission(True, decision)


def reserve(provider: Provider, count: int) -> Booking:
    """Books `count` of this provider's tokens ahead for work deferred until they are
    produced (at most RETRY_MAX_SECONDS ahead): see `TokenBucket.reserve`."""
    bucket = bucket_for(account_name(provider))
    if not settings.PROVIDER_GATES_ENABLED:
        return Booking(0, count, 0.0, bucket.rate_per_second, fail_open=True)
    return bucket.reserve(count, float(settings.RETRY_MAX_SECONDS))


def report(provider: Provider, admission: Admission, result: SendResult) -> float | None:
    """Reports a call's outcome to the provider's breaker. Returns how long the breaker stays
    open now when this outcome found it open or opened it (seconds), else None."""
    if not settings.PROVIDER_GATES_ENABLED:
        return None
    breaker = breaker_for(account_name(provider))
    if result.counts_against_provider:
        state, seconds = breaker.record_failure_until(admission.decision,
                                                      unreachable=result.unreachable)
        return max(seconds, 0.001) if state == OPEN else None
    breaker.record_success(admission.decision)
    return None


def rate_per_second(provider: Provider) -> float:
    return bucket_for(account_name(provider)).rate_per_second


@dataclass
class Lane:
    """One provider's share of a dispatch chunk whose breaker was closed when the chunk began:
    the tokens were taken from the bucket for the whole chunk at once, and successes are
    reported to the breaker in one call (`flush`). A failure is reported at once; if it opens
    the breaker, the lane closes and the chunk's remaining messages go through `admit` (and
    fail over) one by one. Shared by the sender threads."""

    provider: Provider
    tokens: int
    wait_seconds: float  # until the bucket's next token, when the chunk got fewer than asked
    usable: bool = True
    successes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, cost: int) -> bool:
        with self.lock:
            if self.tokens < cost:
                return False
            self.tokens -= cost
            return True

    def report(self, result: SendResult) -> float | None:
        """As `report` above: how long the breaker stays open when it is open now."""
        if result.counts_against_provider:
            state, seconds = breaker_for(account_name(self.provider)).record_failure_until(
                None, unreachable=result.unreachable)
            if state == OPEN:
                with self.lock:
                    self.usable = False
                return max(seconds, 0.001)
            return None
        with self.lock:
            self.successes += 1
        return None

    def flush(self) -> None:
        with self.lock:
            count, self.successes = self.successes, 0
        if count:
            breaker_for(account_name(self.provider)).record_successes(count)


class ChunkGate:
    """The provider gates for one dispatch chunk: per provider account one breaker read and
    one token take for all the chunk's messages (instead of two or three Redis calls per
    message). Messages whose primary provider is not plainly closed (half-open probes) are
    admitted one by one as before."""

    def __init__(self, demands: Iterable[tuple[Sequence[Provider], int]],
                 prepaid: Prepaid | None = None) -> None:
        self.lanes: dict[str, Lane] = {}
        if not settings.PROVIDER_GATES_ENABLED:
            return
        states: dict[str, str] = {}
        need: dict[str, int] = defaultdict(int)
        chosen: dict[str, Provider] = {}
        for providers, cost in demands:
            provider = self._lane_provider(providers, states)
            if provider is not None:
                need[account_name(provider)] += cost
                chosen[account_name(provider)] = provider
        for name, count in need.items():
            booked = prepaid.take_up_to(name, count) if prepaid is not None else 0
            if booked == count:
                self.lanes[name] = Lane(chosen[name], booked, 0.0)
                continue
            grant = bucket_for(name).acquire(count - booked)
            self.lanes[name] = Lane(chosen[name], booked + grant.granted, grant.wait_seconds)

    @staticmethod
    def _lane_provider(providers: Sequence[Provider], states: dict[str, str]) -> Provider | None:
        """The provider a message would be sent through: the first whose breaker is closed,
        past open ones (failover). None when one before it is half-open (its probes decide)."""
        for provider in providers:
            name = account_name(provider)
            if name not in states:
                states[name] = breaker_for(name).state()
            if states[name] in (CLOSED, UNKNOWN):
                return provider
            if states[name] != OPEN:
                return None
        return None

    def lane(self, provider: Provider) -> Lane | None:
        lane = self.lanes.get(account_name(provider))
        return lane if lane is not None and lane.usable else None

    def flush(self) -> None:
        for lane in self.lanes.values():
            lane.flush()


def reset_caches() -> None:
    breaker_for.cache_clear()
    bucket_for.cache_clear()
