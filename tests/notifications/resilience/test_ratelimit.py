"""TokenBucket against a real Redis: burst, refill, wait hints, all-or-nothing, sharing
under concurrency, key expiry and fail-open behaviour."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
import redis

from apps.notifications.resilience import _redis as guard_module
from apps.notifications.resilience.ratelimit import MIN_IDLE_TTL_SECONDS, Grant, TokenBucket


def test_burst_defaults_to_rate_rounded_up(r: redis.Redis) -> None:
    assert TokenBucket(r, "x", 100).burst == 100
    assert TokenBucket(r, "x", 2.5).burst == 3
    assert TokenBucket(r, "x", 0.2).burst == 1


def test_grants_up_to_burst_then_refuses_with_wait(r: redis.Redis, prefix: str) -> None:
    bucket = TokenBucket(r, "twilio:default", rate_per_second=10, burst=5, key_prefix=prefix)
    grants = [bucket.acquire() for _ in range(5)]
    assert all(g.granted == 1 and g.complete and g.wait_seconds == 0 for g in grants)
    refused = bucket.acquire()
    assert refused.granted == 0 and not refused and not refused.fail_open
    assert 0.05 < refused.wait_seconds <= 0.1  # one token per 100 ms


def test_partial_grant(r: redis.Redis, prefix: str) -> None:
    bucket = TokenBucket(r, "sendgrid:default", rate_per_second=10, burst=5, key_prefix=prefix)
    assert bucket.acquire(3).granted == 3
    grant = bucket.acquire(4)
    assert grant == Grant(granted=2, requested=4, wait_seconds=grant.wait_seconds)
    assert 0.05 < grant.wait_seconds <= 0.1
    # More than the burst can be asked for; it is handed out as it accrues.
    assert 0 <= bucket.acquire(50).granted <= 1


def test_refills_at_the_rate(r: redis.Redis, prefix: str) -> None:
    bucket = TokenBucket(r, "whatsapp:default", rate_per_second=20, burst=10, key_prefix=prefix)
    assert bucket.acquire(10).granted == 10
    time.sleep(0.25)  # 5 tokens
    grant = bucket.acquire(10)
    assert 4 <= grant.granted <= 6
    assert 0 < grant.wait_seconds <= 0.05
    time.sleep(1.0)  # far more than the burst's worth: capped at burst
    assert bucket.acquire(20).granted == 10


def test_all_or_nothing(r: redis.Redis, prefix: str) -> None:
    bucket = TokenBucket(r, "sendgrid:bulk", rate_per_second=10, burst=5, key_prefix=prefix)
    assert bucket.acquire(3).granted == 3
    refused = bucket.acquire_all_or_nothing(3)  # only 2 left: take none
    assert refused.granted == 0 and refused.requested == 3
    assert 0.05 < refused.wait_seconds <= 0.1  # until the third token
    assert bucket.acquire_all_or_nothing(2).granted == 2
    with pytest.raises(ValueError):
        bucket.acquire_all_or_nothing(6)  # larger than the bucket: never satisfiable
    with pytest.raises(ValueError):
        bucket.acquire(0)


def test_instances_share_one_bucket(r: redis.Redis, redis_url: str, prefix: str) -> None:
    other = redis.Redis.from_url(redis_url)
    try:
        worker_a = TokenBucket(r, "twilio:default", 1, burst=4, key_prefix=prefix)
        worker_b = TokenBucket(other, "twilio:default", 1, burst=4, key_prefix=prefix)
        assert worker_a.acquire(3).granted == 3
        assert worker_b.acquire(3).granted == 1
        assert worker_a.acquire().granted == 0
        worker_b.reset()
        assert worker_a.acquire(4).granted == 4
    finally:
        other.close()


def test_concurrent_workers_never_exceed_rate(r: redis.Redis, redis_url: str, prefix: str) -> None:
    rate, burst, threads, duration = 50.0, 50, 8, 1.5
    clients = [redis.Redis.from_url(redis_url) for _ in range(threads)]
    totals = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def hammer(i: int) -> None:
        bucket = TokenBucket(clients[i], "sendgrid:default", rate, burst, key_prefix=prefix)
        barrier.wait()
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            totals[i] += bucket.acquire().granted

    pool = [threading.Thread(target=hammer, args=(i,)) for i in range(threads)]
    try:
        for t in pool:
            t.start()
        started = time.monotonic()  # before the release: elapsed covers every acquire
        barrier.wait()
        for t in pool:
            t.join()
        elapsed = time.monotonic() - started
    finally:
        for c in clients:
            c.close()
    allowed = rate * elapsed + burst
    assert sum(totals) <= allowed + 1
    assert sum(totals) >= 0.8 * allowed
    assert sum(1 for n in totals if n) > 1  # really shared, not one lucky thread


def test_idle_keys_expire(r: redis.Redis, prefix: str) -> None:
    fast = TokenBucket(r, "sendgrid:default", 500, key_prefix=prefix)
    slow = TokenBucket(r, "twilio:slow", 0.01, burst=5, key_prefix=prefix)
    fast.acquire()
    slow.acquire()
    assert 59_000 < r.pttl(fast._key) <= 60_000  # 2 x 1 s to fill, but at least 60 s
    assert 999_000 < r.pttl(slow._key) <= 1_000_000  # 2 x 500 s to fill


def test_fails_open_when_redis_is_unreachable(
    unreachable: redis.Redis, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guard_module, "UNAVAILABLE_COOLDOWN_SECONDS", 0.0)  # really try each time
    bucket = TokenBucket(unreachable, "twilio:unreachable-1", 1, burst=1)
    caplog.set_level(logging.WARNING, logger="apps.notifications.resilience")
    started = time.monotonic()
    grants = [bucket.acquire(3) for _ in range(5)] + [bucket.acquire_all_or_nothing(1)]
    assert time.monotonic() - started < 2
    assert all(g.complete and g.fail_open and g.wait_seconds == 0 for g in grants)
    assert grants[0] == Grant(granted=3, requested=3, wait_seconds=0.0, fail_open=True)
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per minute per bucket
    assert "failing open" in warnings[0].getMessage()


def test_cooldown_skips_redis_after_a_connection_error(unreachable: redis.Redis) -> None:
    bucket = TokenBucket(unreachable, "twilio:unreachable-2", 1)
    assert bucket.acquire().fail_open
    started = time.monotonic()
    for _ in range(200):
        assert bucket.acquire().fail_open
    assert time.monotonic() - started < 0.1


def test_validates_arguments(r: redis.Redis) -> None:
    for rate in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            TokenBucket(r, "x", rate)
    with pytest.raises(ValueError):
        TokenBucket(r, "x", 10, burst=0)


def test_from_settings_uses_seed_defaults_and_overrides(settings: Any) -> None:
    settings.PROVIDER_RATE_LIMITS = {"twilio:eu": {"rate_per_second": 10, "burst": 20}, "sendgrid": 250}
    assert TokenBucket.from_settings("whatsapp:default").rate_per_second == 80
    assert TokenBucket.from_settings("twilio:default").rate_per_second == 100
    eu = TokenBucket.from_settings("twilio:eu")
    assert (eu.rate_per_second, eu.burst) == (10, 20)
    assert TokenBucket.from_settings("sendgrid:default").rate_per_second == 250
    assert TokenBucket.from_settings("sendgrid:default", burst=1).burst == 1
    with pytest.raises(KeyError):
        TokenBucket.from_settings("pigeon:default")


def test_reserve_books_tokens_in_line_behind_earlier_bookings(r: redis.Redis, prefix: str) -> None:
    """Two workers deferring work on an empty bucket get consecutive slots, not the same next
    token: the second booking starts where the first one ends."""
    bucket = TokenBucket(r, "smtp:default", rate_per_second=10, burst=10, key_prefix=prefix)
    assert bucket.acquire(10).granted == 10  # empty now
    first = bucket.reserve(20)
    second = bucket.reserve(10)
    assert (first.booked, second.booked) == (20, 10)
    assert 0.05 < first.at(1) <= 0.11 and 1.95 < first.at(20) <= 2.01
    assert 2.05 < second.at(1) <= 2.11 and 2.95 < second.at(10) <= 3.01
    # Someone asking now finds nothing before the bookings are served.
    grant = bucket.acquire(1)
    assert grant.granted == 0 and grant.wait_seconds > 2.9


def test_reserve_books_no_further_than_the_horizon(r: redis.Redis, prefix: str) -> None:
    bucket = TokenBucket(r, "smtp:default", rate_per_second=10, burst=10, key_prefix=prefix)
    bucket.acquire(10)
    booking = bucket.reserve(100, max_wait_seconds=2)
    assert booking.booked == 20
    assert bucket.reserve(5, max_wait_seconds=2).booked == 0


def test_a_bucket_in_debt_outlives_its_idle_ttl(r: redis.Redis, prefix: str) -> None:
    bucket = TokenBucket(r, "smtp:default", rate_per_second=1, burst=1, key_prefix=prefix)
    bucket.reserve(200, max_wait_seconds=300)
    assert r.pttl(bucket._key) > (MIN_IDLE_TTL_SECONDS + 150) * 1000
