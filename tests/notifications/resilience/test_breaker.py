"""CircuitBreaker against a real Redis: transitions, probe accounting, sharing between
instances (as between workers), key hygiene and fail-open behaviour."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
import redis

from apps.notifications.resilience import _redis as guard_module
from apps.notifications.resilience.breaker import CLOSED, OPEN, CircuitBreaker, Decision


def make(r: redis.Redis, prefix: str, name: str = "sendgrid:default", **kwargs: Any) -> CircuitBreaker:
    options: dict[str, Any] = {"window_seconds": 30, "min_requests": 10, "failure_ratio": 0.5,
                               "open_seconds": 0.3, "backoff_multiplier": 1}
    options.update(kwargs)
    return CircuitBreaker(r, name, key_prefix=prefix, **options)


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.min_requests):
        breaker.record_failure()
    assert breaker.state() == "open"


def wait_until_half_open(breaker: CircuitBreaker) -> None:
    decision = breaker.allow()
    assert not decision.allowed and decision.retry_after is not None
    time.sleep(decision.retry_after + 0.02)


def sleep_into_next_server_second(r: redis.Redis) -> None:
    """Sleep until 50 ms into the next second of Redis server time (the window's bucket)."""
    _, micros = r.time()
    time.sleep((1_000_000 - micros) / 1_000_000 + 0.05)


def test_stays_closed_under_min_requests(r: redis.Redis, prefix: str) -> None:
    breaker = make(r, prefix, min_requests=10)
    for _ in range(9):
        assert breaker.record_failure() == "closed"
    assert breaker.state() == "closed"
    decision = breaker.allow()
    assert decision.allowed and decision.state == "closed" and not decision.is_probe
    assert decision.retry_after is None


def test_opens_exactly_at_the_failure_ratio(r: redis.Redis, prefix: str) -> None:
    events: list[tuple[str, str, str]] = []
    breaker = make(r, prefix, min_requests=10, failure_ratio=0.5, on_state_change=lambda *e: events.append(e))
    for _ in range(6):
        breaker.record_success()
    for _ in range(4):
        breaker.record_failure()
    assert breaker.state() == "closed"  # 4/10
    assert breaker.record_failure() == "closed"  # 5/11 < 0.5
    assert events == []
    assert breaker.record_failure() == "open"  # 6/12 == 0.5
    assert events == [("sendgrid:default", "closed", "open")]


def test_refuses_while_open_with_retry_after(r: redis.Redis, prefix: str) -> None:
    breaker = make(r, prefix, open_seconds=1)
    trip(breaker)
    decision = breaker.allow()
    assert not decision.allowed and not decision
    assert decision.state == "open"
    assert decision.retry_after is not None and 0.5 < decision.retry_after <= 1.0
    # Late outcomes of calls admitted before the trip change nothing.
    assert breaker.record_success() == "open"
    assert breaker.record_failure() == "open"
    later = breaker.allow()
    assert not later.allowed and later.retry_after is not None and later.retry_after <= decision.retry_after


def test_goes_half_open_after_open_seconds_and_admits_one_probe(r: redis.Redis, prefix: str) -> None:
    events: list[tuple[str, str, str]] = []
    breaker = make(r, prefix, on_state_change=lambda *e: events.append(e))
    trip(breaker)
    wait_until_half_open(breaker)
    assert breaker.state() == "half_open"  # read-only view; the transition happens in allow()
    probe = breaker.allow()
    assert probe.allowed and probe.state == "half_open" and probe.is_probe
    assert events[-1] == ("sendgrid:default", "open", "half_open")
    other = breaker.allow()
    assert not other.allowed and other.state == "half_open"
    assert other.retry_after is not None and 0 < other.retry_after <= 1.0  # poll again soon


def test_only_one_of_many_concurrent_callers_gets_the_probe(
    r: redis.Redis, redis_url: str, prefix: str
) -> None:
    breaker = make(r, prefix)
    trip(breaker)
    wait_until_half_open(breaker)
    threads = 16
    # Each thread has its own client and breaker instance, as a separate worker process would.
    clients = [redis.Redis.from_url(redis_url) for _ in range(threads)]
    barrier = threading.Barrier(threads)
    decisions: list[Decision] = []
    lock = threading.Lock()

    def worker(client: redis.Redis) -> None:
        mine = make(client, prefix)
        barrier.wait()
        decision = mine.allow()
        with lock:
            decisions.append(decision)

    pool = [threading.Thread(target=worker, args=(c,)) for c in clients]
    try:
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    finally:
        for c in clients:
            c.close()
    assert len(decisions) == threads
    assert sum(d.allowed for d in decisions) == 1
    assert all(d.state == "half_open" for d in decisions)


def test_half_open_probes_limit_is_configurable(r: redis.Redis, prefix: str) -> None:
    breaker = make(r, prefix, half_open_probes=3)
    trip(breaker)
    wait_until_half_open(breaker)
    decisions = [breaker.allow() for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert len({d.probe_token for d in decisions[:3]}) == 3


def test_probe_success_closes_and_clears_the_window(r: redis.Redis, prefix: str) -> None:
    events: list[tuple[str, str, str]] = []
    breaker = make(r, prefix, on_state_change=lambda *e: events.append(e))
    trip(breaker)
    wait_until_half_open(breaker)
    probe = breaker.allow()
    assert probe.is_probe
    # Outcomes without the probe's token (e.g. stragglers) don't decide the half-open state.
    assert breaker.record_success() == "half_open"
    assert breaker.record_success(probe) == "closed"
    assert events[-1] == ("sendgrid:default", "half_open", "closed")
    assert breaker.state() == "closed"
    assert r.exists(*breaker._keys) == 0  # state, window and probes all gone
    # A fresh window: nine failures don't reopen it.
    for _ in range(9):
        breaker.record_failure()
    assert breaker.allow().allowed


def test_probe_failure_reopens(r: redis.Redis, prefix: str) -> None:
    events: list[tuple[str, str, str]] = []
    breaker = make(r, prefix, on_state_change=lambda *e: events.append(e))
    trip(breaker)
    wait_until_half_open(breaker)
    probe = breaker.allow()
    assert breaker.record_failure(probe.probe_token) == "open"
    assert events[-1] == ("sendgrid:default", "half_open", "open")
    decision = breaker.allow()
    assert not decision.allowed and decision.state == "open"
    assert decision.retry_after is not None and 0.2 < decision.retry_after <= 0.3  # no back-off here
    # The probe's token is spent: reporting it again changes nothing.
    assert breaker.record_success(probe) == "open"


def test_probe_failure_backs_off_up_to_max_open_seconds(r: redis.Redis, prefix: str) -> None:
    breaker = make(r, prefix, open_seconds=0.2, backoff_multiplier=2, max_open_seconds=0.3)
    trip(breaker)
    wait_until_half_open(breaker)
    breaker.record_failure(breaker.allow())
    decision = breaker.allow()
    assert decision.retry_after is not None and 0.25 < decision.retry_after <= 0.3  # 0.2*2, capped


def test_unreported_probe_lease_is_reclaimed(r: redis.Redis, prefix: str) -> None:
    breaker = make(r, prefix, probe_timeout_seconds=0.3)
    trip(breaker)
    wait_until_half_open(breaker)
    first = breaker.allow()
    assert first.is_probe
    assert not breaker.allow().allowed
    time.sleep(0.35)  # the probe crashed without reporting
    second = breaker.allow()
    assert second.is_probe and second.probe_token != first.probe_token
    assert breaker.record_success(second) == "closed"


def test_two_instances_share_state(r: redis.Redis, redis_url: str, prefix: str) -> None:
    other_client = redis.Redis.from_url(redis_url)
    try:
        worker_a = make(r, prefix)
        worker_b = make(other_client, prefix)
        for _ in range(5):
            worker_a.record_failure()
            worker_b.record_failure()
        assert worker_a.state() == "open"
        assert worker_b.state() == "open"
        assert not worker_b.allow().allowed
        wait_until_half_open(worker_a)
        probe = worker_b.allow()
        assert probe.is_probe
        assert not worker_a.allow().allowed  # B holds the only probe slot
        worker_b.record_success(probe)
        assert worker_a.allow().state == "closed"
        worker_a.reset()
    finally:
        other_client.close()


def test_different_names_are_independent(r: redis.Redis, prefix: str) -> None:
    sendgrid = make(r, prefix, "sendgrid:default")
    twilio = make(r, prefix, "twilio:default")
    trip(sendgrid)
    assert twilio.state() == "closed" and twilio.allow().allowed


def test_window_rolls_old_outcomes_out(r: redis.Redis, prefix: str) -> None:
    breaker = make(r, prefix, window_seconds=1, min_requests=4, failure_ratio=0.5)
    for _ in range(3):
        breaker.record_failure()
    sleep_into_next_server_second(r)  # the three failures are now outside the 1 s window
    assert breaker.record_failure() == "closed"
    assert breaker.record_failure() == "closed"
    assert breaker.record_failure() == "closed"
    assert breaker.record_failure() == "open"  # 4 of 4 within this second


def test_keys_have_ttls(r: redis.Redis, prefix: str) -> None:
    breaker = make(r, prefix, window_seconds=5, probe_timeout_seconds=2)
    window_key, state_key, probes_key = breaker._keys[1], breaker._keys[0], breaker._keys[2]
    breaker.record_success()
    assert 0 < r.pttl(window_key) <= 6000
    trip(breaker)
    assert r.exists(window_key) == 0
    assert 0 < r.pttl(state_key) <= 86_400_000
    wait_until_half_open(breaker)
    breaker.allow()
    assert 0 < r.pttl(probes_key) <= 2000


def test_reset_closes(r: redis.Redis, prefix: str) -> None:
    events: list[tuple[str, str, str]] = []
    breaker = make(r, prefix, on_state_change=lambda *e: events.append(e))
    trip(breaker)
    breaker.reset()
    assert breaker.state() == "closed"
    assert events == [("sendgrid:default", "closed", "open"), ("sendgrid:default", "open", "closed")]
    assert r.exists(*breaker._keys) == 0


def test_callback_errors_do_not_propagate(r: redis.Redis, prefix: str) -> None:
    def boom(*_: str) -> None:
        raise RuntimeError("metrics backend down")

    breaker = make(r, prefix, on_state_change=boom)
    trip(breaker)
    assert not breaker.allow().allowed


def test_fails_open_when_redis_is_unreachable(
    unreachable: redis.Redis, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guard_module, "UNAVAILABLE_COOLDOWN_SECONDS", 0.0)  # really try each time
    breaker = CircuitBreaker(unreachable, "sendgrid:unreachable-1")
    caplog.set_level(logging.WARNING, logger="apps.notifications.resilience")
    started = time.monotonic()
    for _ in range(5):
        decision = breaker.allow()
        assert decision.allowed and decision.state == "unknown" and not decision.is_probe
        assert breaker.record_failure() == "unknown"
        assert breaker.record_success() == "unknown"
    assert breaker.state() == "unknown"
    assert time.monotonic() - started < 2
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per minute per breaker
    assert "failing open" in warnings[0].getMessage()
    with pytest.raises(redis.ConnectionError):
        breaker.reset()  # operator action: fails loudly


def test_default_client_fails_open_then_skips_redis_during_cooldown() -> None:
    """With a plain ``redis.Redis(port=1)`` (the client's own retries: ~2-6 s on the first
    call) allow() still fails open, and later calls through that pool return at once."""
    client = redis.Redis(port=1)
    try:
        breaker = CircuitBreaker(client, "sendgrid:unreachable-2")
        first = breaker.allow()
        assert first.allowed and first.state == "unknown"
        started = time.monotonic()
        for _ in range(100):
            assert breaker.allow().allowed
        assert time.monotonic() - started < 0.1
    finally:
        client.close()


def test_validates_arguments(r: redis.Redis) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(r, "x", failure_ratio=0)
    with pytest.raises(ValueError):
        CircuitBreaker(r, "x", min_requests=0)
    with pytest.raises(ValueError):
        CircuitBreaker(r, "")


def test_from_settings_builds_without_touching_redis(settings: Any) -> None:
    settings.CIRCUIT_BREAKER = {"min_requests": 7}
    breaker = CircuitBreaker.from_settings("sendgrid:default", open_seconds=5)
    assert breaker.min_requests == 7 and breaker.open_seconds == 5


def test_a_probe_that_made_no_call_gives_its_slot_to_the_next_caller_at_once(
    r: redis.Redis, prefix: str
) -> None:
    """A probe refused by the rate limit after the breaker let it through made no call: its
    slot is released, not held for the probe's lease (30 s by default) while the provider may
    have recovered long ago."""
    breaker = make(r, prefix, probe_timeout_seconds=30)
    trip(breaker)
    wait_until_half_open(breaker)
    first = breaker.allow()
    assert first.is_probe and not breaker.allow().allowed

    breaker.release(first)

    second = breaker.allow()
    assert second.is_probe
    assert breaker.record_success(second) == "closed"


def test_half_open_admits_several_probes_and_closes_after_n_successes(
    r: redis.Redis, prefix: str
) -> None:
    breaker = make(r, prefix, half_open_probes=2, half_open_successes=3)
    trip(breaker)
    wait_until_half_open(breaker)
    a, b = breaker.allow(), breaker.allow()
    assert a.is_probe and b.is_probe and not breaker.allow().allowed
    assert breaker.record_success(a) == "half_open"
    c = breaker.allow()  # a's slot is free again at once
    assert c.is_probe
    assert breaker.record_success(b) == "half_open"
    assert breaker.record_success(c) == "closed"


def test_a_probe_failure_after_some_successes_reopens_and_the_count_starts_over(
    r: redis.Redis, prefix: str
) -> None:
    breaker = make(r, prefix, half_open_probes=2, half_open_successes=2)
    trip(breaker)
    wait_until_half_open(breaker)
    a, b = breaker.allow(), breaker.allow()
    assert breaker.record_success(a) == "half_open"
    assert breaker.record_failure(b) == "open"
    wait_until_half_open(breaker)
    c = breaker.allow()
    assert breaker.record_success(c) == "half_open"  # one success of the two needed, again
    assert breaker.record_success(breaker.allow()) == "closed"


def test_recovery_is_noticed_within_a_bounded_open_period_however_long_the_outage(
    r: redis.Redis, prefix: str, settings: Any
) -> None:
    """With the settings' defaults, the open period after failed probes grows to at most
    BREAKER_MAX_OPEN_SECONDS (30 s): a provider back after a long outage is probed again
    within 30 s, not after minutes of exponential back-off."""
    options = dict(settings.CIRCUIT_BREAKER)
    breaker = CircuitBreaker(r, "sendgrid:default", key_prefix=prefix, **options)
    trip(breaker)
    opened = []
    for _ in range(8):  # eight failed probes: the outage lasts
        r.hset(breaker._keys[0], "open_until", 0)  # the open period is over
        probe = breaker.allow()
        assert probe.is_probe
        breaker.record_failure(probe)
        opened.append(breaker.allow().retry_after)
    assert max(opened) <= 30
    assert options["half_open_probes"] > 1 and options["half_open_successes"] > 1


def test_unreachable_failures_in_a_row_open_it_below_min_requests(r: redis.Redis, prefix: str) -> None:
    cb = CircuitBreaker(r, "u", key_prefix=prefix, min_requests=20, unreachable_after=3,
                        open_seconds=5)
    assert cb.record_failure(unreachable=True) == CLOSED
    assert cb.record_failure(unreachable=True) == CLOSED
    state, seconds = cb.record_failure_until(unreachable=True)
    assert state == OPEN and 4 < seconds <= 5
    # A late outcome of a call admitted before it opened tells how long it stays open.
    state, seconds = cb.record_failure_until(unreachable=True)
    assert state == OPEN and 0 < seconds <= 5


def test_any_other_outcome_breaks_the_run_of_unreachable_failures(r: redis.Redis, prefix: str) -> None:
    cb = CircuitBreaker(r, "u", key_prefix=prefix, min_requests=20, unreachable_after=2)
    for between in (cb.record_success, cb.record_failure):
        assert cb.record_failure(unreachable=True) == CLOSED
        between()
    assert cb.record_failure(unreachable=True) == CLOSED
    assert cb.record_failure(unreachable=True) == OPEN


def test_unreachable_after_zero_keeps_the_ratio_rule_only(r: redis.Redis, prefix: str) -> None:
    cb = CircuitBreaker(r, "u", key_prefix=prefix, min_requests=20)
    for _ in range(10):
        assert cb.record_failure(unreachable=True) == CLOSED
