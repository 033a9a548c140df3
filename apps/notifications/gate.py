"""Provider admission: the circuit breaker and the rate limit of each provider account,
shared by every worker through Redis. Dispatch asks before every provider call."""

from __future__ import annotations

import logging
import math
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache

from django.conf import settings

from apps.core.queues import Priority

from .providers.base import Provider, SendResult
from .resilience.breaker import CLOSED, OPEN, UNKNOWN, CircuitBreaker, Decision
from .resilience.ratelimit import Booking, Grant, TokenBucket

logger = logging.getLogger(__name__)


def account_name(provider: Provider) -> str:
    # One live account per provider ("default") and the test-mode sandbox account ("test"),
    # so a test key's sends never trip or throttle the live provider; per-client accounts
    # would extend this name.
    return f"{provider.name}:{provider.account}"


@cache
def breaker_for(name: str) -> CircuitBreaker:
    return CircuitBreaker.from_settings(name)  # it logs its own state changes


# Priorities whose sends never wait behind a bulk backlog's bookings: with
# PROVIDER_URGENT_SHARE > 0 each provider account's rate is split into two buckets, "bulk"
# (normal, low: 1 - share of the rate) and "urgent" (critical, high: the share, and whatever
# the bulk bucket has spare). A backlog that drains at the provider's limit books the bulk
# bucket minutes ahead; without the split a critical send would be deferred behind those
# bookings. The sum of both buckets' rates is the account's limit, so it is never exceeded.
URGENT_PRIORITIES = frozenset({Priority.CRITICAL, Priority.HIGH})


def is_urgent(priority: str) -> bool:
    return priority in URGENT_PRIORITIES


def _urgent_share() -> float:
    share = float(getattr(settings, "PROVIDER_URGENT_SHARE", 0.0) or 0.0)
    return share if 0.0 < share < 1.0 else 0.0


class UrgentBucket:
    """The urgent lane of a provider account: its own bucket first, then whole tokens the
    bulk bucket has spare now (never the bulk bucket's bookings: when a backlog has booked
    it ahead, it has none). Deferred urgent work books on its own bucket."""

    def __init__(self, own: TokenBucket, spare: TokenBucket) -> None:
        self.own, self.spare = own, spare
        self.rate_per_second = own.rate_per_second + spare.rate_per_second

    def acquire(self, n: int = 1) -> Grant:
        grant = self.own.acquire(n)
        if grant.complete:
            return grant
        more = self.spare.acquire(n - grant.granted)
        granted = grant.granted + more.granted
        return Grant(granted, n, 0.0 if granted >= n else grant.wait_seconds,
                     grant.fail_open or more.fail_open)

    def acquire_all_or_nothing(self, n: int) -> Grant:
        """Its own bucket, else the bulk bucket's spare tokens; when neither has `n`, the wait
        of the first that could ever hold them."""
        refused: Grant | None = None
        for bucket in (self.own, self.spare):
            if n <= bucket.burst:
                grant = bucket.acquire_all_or_nothing(n)
                if grant.complete:
                    return grant
                refused = refused or grant
        if refused is None:
            raise ValueError(f"n={n} exceeds both bursts; it could never be granted")
        return refused

    def reserve(self, n: int, max_wait_seconds: float = 300.0) -> Booking:
        return self.own.reserve(n, max_wait_seconds)


@cache
def bucket_for(name: str, urgent: bool = False) -> TokenBucket | UrgentBucket:
    """The bucket a send of this provider account takes its tokens from: with an urgent
    share, the bulk bucket (normal, low) or the urgent lane (critical, high); without, the
    account's one bucket."""
    share = _urgent_share()
    whole = TokenBucket.from_settings(name)
    if not share:
        return whole
    if not urgent:
        return TokenBucket.from_settings(
            name, rate_per_second=whole.rate_per_second * (1 - share),
            burst=max(1, math.floor(whole.burst * (1 - share))))
    own = TokenBucket.from_settings(
        name, rate_per_second=whole.rate_per_second * share,
        burst=max(1, math.ceil(whole.burst * share)), key_prefix="notifyhub:rl:urgent")
    bulk = bucket_for(name)
    assert isinstance(bulk, TokenBucket)
    return UrgentBucket(own, bulk)


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


def admit(provider: Provider, cost: int = 1, prepaid: Prepaid | None = None, *,
          urgent: bool = False) -> Admission:
    """May we call this provider now for `cost` messages? Never blocks or sleeps. Tokens the
    work booked before its deferral (`prepaid`) are spent before the bucket is asked; `urgent`
    (a critical or high send) asks the urgent lane."""
    if not settings.PROVIDER_GATES_ENABLED:
        return Admission(True)
    name = account_name(provider)
    breaker = breaker_for(name)
    decision = breaker.allow()
    if not decision.allowed:
        return Admission(False, decision, decision.retry_after or 1.0, "circuit_open")
    if prepaid is not None and prepaid.take(name, cost):
        return Admission(True, decision)
    grant = bucket_for(name, urgent).acquire_all_or_nothing(cost)
    if not grant.complete:
        if decision.is_probe:
            breaker.release(decision)  # no call made: the probe slot goes to the next caller
        return Admission(False, decision, max(grant.wait_seconds, 0.001), "rate_limited")
    return Admission(True, decision)


def reserve(provider: Provider, count: int, *, urgent: bool = False) -> Booking:
    """Books `count` of this provider's tokens ahead for work deferred until they are
    produced (at most RETRY_MAX_SECONDS ahead): see `TokenBucket.reserve`. Urgent work books
    on the urgent lane, behind other urgent work only."""
    bucket = bucket_for(account_name(provider), urgent)
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
                 prepaid: Prepaid | None = None, *, urgent: bool = False) -> None:
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
            grant = bucket_for(name, urgent).acquire(count - booked)
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
