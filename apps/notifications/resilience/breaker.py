"""A circuit breaker whose state lives in Redis, shared by every worker process on every host.

States and transitions (all decided inside one Lua script per call, on Redis server time):

``closed``
    Every call is allowed. Outcomes are counted in a rolling window of ``window_seconds``
    (per-second buckets). When a *failure* is recorded and the window holds at least
    ``min_requests`` outcomes with ``failures / total >= failure_ratio``, the breaker opens.
``open``
    Every call is refused with ``retry_after`` = time left until ``open_until``. Outcomes
    reported now (calls admitted before the breaker opened) are ignored.
``half_open``
    Entered lazily by the first ``allow()`` after ``open_until``. At most ``half_open_probes``
    callers hold a probe slot at a time; a slot is a lease (``probe_timeout_seconds``) so a
    probe that crashes without reporting cannot wedge the breaker. ``allow()`` returns the
    slot's ``probe_token``; the caller passes it (or the whole :class:`Decision`) to
    ``record_success`` / ``record_failure`` (or ``release`` when it made no call after all:
    the slot goes to the next caller at once). ``half_open_successes`` probe successes close
    the breaker (window, probes and back-off cleared); a probe failure re-opens it for the
    previous open duration times ``backoff_multiplier``, capped at ``max_open_seconds``.
    Untokened outcomes, and outcomes whose lease was already reclaimed, do not move a
    half-open breaker.

Unreachable (``record_failure(..., unreachable=True)``: connection refused, reset, timeout)
    A provider that cannot be reached at all is down whatever the volume: ``unreachable_after``
    such failures in a row (no success and no other outcome in between, at any rate) open a
    closed breaker even when the window holds fewer than ``min_requests`` outcomes. 0 turns
    this off.

Redis failures never block sending: ``allow()`` then returns ``allowed=True, state="unknown"``
(and ``record_*`` drop the outcome), logging at most once a minute per breaker.

Only the process whose call performs a transition sees it, so ``on_state_change`` fires once
per transition cluster-wide (good for counters). ``open -> half_open`` is observed on the first
``allow()`` after the open period, not at the instant it elapses.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import redis

from ._redis import RedisGuard, client_from_settings

log = logging.getLogger(__name__)

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"
UNKNOWN: Final = "unknown"

#: Upper bound of ``retry_after`` for callers refused because every half-open probe slot is
#: taken: the probe's verdict normally arrives within one provider call.
HALF_OPEN_RETRY_SECONDS: Final = 1.0

#: A non-closed breaker nobody transitions for this long is forgotten (reads as closed).
STATE_TTL_SECONDS: Final = 86_400

StateChangeCallback = Callable[[str, str, str], None]
"""``callback(name, old_state, new_state)``."""

# KEYS: state hash, window hash, probes zset.
# ARGV: op, window_s, min_requests, failure_ratio, base_open_ms, max_open_ms, backoff,
#       max_probes, probe_ttl_ms, state_ttl_ms, token ('' if none), half_open_retry_ms,
#       count (successes counted by an untokened 'success', default 1), probe successes
#       that close a half-open breaker, unreachable failures in a row that open a closed
#       breaker (0: off), whether this failure is one (1/0).
# Returns {state_after, state_before, allowed (0/1), retry_after_ms, probe_token or ''}.
_SCRIPT: Final = r"""
local state_key, win_key, probe_key = KEYS[1], KEYS[2], KEYS[3]
local op = ARGV[1]
local window_s = tonumber(ARGV[2])
local min_requests = tonumber(ARGV[3])
local failure_ratio = tonumber(ARGV[4])
local base_open_ms = tonumber(ARGV[5])
local max_open_ms = tonumber(ARGV[6])
local backoff = tonumber(ARGV[7])
local max_probes = tonumber(ARGV[8])
local probe_ttl_ms = tonumber(ARGV[9])
local state_ttl_ms = tonumber(ARGV[10])
local token = ARGV[11]
local half_open_retry_ms = tonumber(ARGV[12])
local count = tonumber(ARGV[13] or '1') or 1
local successes_needed = tonumber(ARGV[14] or '1') or 1
local unreachable_after = tonumber(ARGV[15] or '0') or 0
local unreachable = ARGV[16] == '1'

local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now_ms = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)

local function int(x) return string.format('%d', x) end

local v = redis.call('HMGET', state_key, 'state', 'open_until', 'open_ms')
local state = v[1] or 'closed'
local open_until = tonumber(v[2]) or 0
local open_ms = tonumber(v[3]) or base_open_ms
-- What a reader should see: an open breaker past its deadline is effectively half-open.
local effective = state
if state == 'open' and now_ms >= open_until then effective = 'half_open' end

local function trip(duration_ms)
  redis.call('HSET', state_key, 'state', 'open', 'open_until', int(now_ms + duration_ms),
             'open_ms', int(duration_ms))
  redis.call('HDEL', state_key, 'probe_ok', 'unreachable')
  redis.call('PEXPIRE', state_key, state_ttl_ms)
  redis.call('DEL', win_key, probe_key)
end

-- Sum the buckets inside the window and delete the ones that fell out of it.
local function prune_and_count()
  local flat = redis.call('HGETALL', win_key)
  local oldest = now_s - window_s + 1
  local total, fails, stale = 0, 0, {}
  for i = 1, #flat, 2 do
    local field = flat[i]
    local sep = string.find(field, ':', 1, true)
    local sec = tonumber(string.sub(field, 1, sep - 1))
    if sec < oldest then
      stale[#stale + 1] = field
    else
      local n = tonumber(flat[i + 1])
      total = total + n
      if string.sub(field, sep + 1) == 'f' then fails = fails + n end
    end
  end
  for i = 1, #stale, 500 do
    redis.call('HDEL', win_key, unpack(stale, i, math.min(i + 499, #stale)))
  end
  return total, fails
end

if op == 'state' then
  return {effective, effective, 0, 0, ''}
end

if op == 'reset' then
  redis.call('DEL', state_key, win_key, probe_key)
  return {'closed', effective, 1, 0, ''}
end

if op == 'allow' then
  if state == 'closed' then return {'closed', 'closed', 1, 0, ''} end
  if state == 'open' then
    if now_ms < open_until then return {'open', 'open', 0, open_until - now_ms, ''} end
    redis.call('HSET', state_key, 'state', 'half_open')
    redis.call('HDEL', state_key, 'probe_ok')
    redis.call('PEXPIRE', state_key, state_ttl_ms)
    redis.call('DEL', probe_key)
  end
  -- half-open: reclaim expired leases, then take a free slot if there is one.
  redis.call('ZREMRANGEBYSCORE', probe_key, '-inf', now_ms)
  if redis.call('ZCARD', probe_key) < max_probes then
    redis.call('ZADD', probe_key, now_ms + probe_ttl_ms, token)
    redis.call('PEXPIRE', probe_key, probe_ttl_ms)
    return {'half_open', state, 1, 0, token}
  end
  local first = redis.call('ZRANGE', probe_key, 0, 0, 'WITHSCORES')
  local wait = math.min(tonumber(first[2]) - now_ms, half_open_retry_ms)
  return {'half_open', state, 0, math.max(wait, 1), ''}
end

if op == 'release' then
  -- a probe that made no call after all: its slot goes to the next caller now
  if token ~= '' then redis.call('ZREM', probe_key, token) end
  return {effective, effective, 1, 0, ''}
end

-- op == 'success' or 'failure'
if state == 'half_open' and token ~= '' and redis.call('ZSCORE', probe_key, token) then
  if op == 'success' then
    local ok = redis.call('HINCRBY', state_key, 'probe_ok', 1)
    if ok < successes_needed then
      redis.call('ZREM', probe_key, token)
      return {'half_open', 'half_open', 1, 0, ''}
    end
    redis.call('DEL', state_key, win_key, probe_key)
    return {'closed', 'half_open', 1, 0, ''}
  end
  local next_ms = math.min(math.max(open_ms * backoff, base_open_ms), max_open_ms)
  trip(next_ms)
  return {'open', 'half_open', 0, next_ms, ''}
end
if state ~= 'closed' then
  -- Late outcome of a call admitted earlier, or a reclaimed probe: no effect (an open
  -- breaker tells how long it stays open).
  if effective == 'open' then return {'open', 'open', 0, open_until - now_ms, ''} end
  return {effective, effective, 0, 0, ''}
end

-- Unreachable failures in a row: any other outcome breaks the run.
if unreachable_after > 0 then
  if op == 'failure' and unreachable then
    local streak = redis.call('HINCRBY', state_key, 'unreachable', 1)
    redis.call('PEXPIRE', state_key, state_ttl_ms)
    if streak >= unreachable_after then
      trip(base_open_ms)
      return {'open', 'closed', 0, base_open_ms, ''}
    end
  else
    redis.call('HDEL', state_key, 'unreachable')
  end
end

local field = int(now_s) .. (op == 'success' and ':s' or ':f')
redis.call('HINCRBY', win_key, field, op == 'success' and count or 1)
redis.call('PEXPIRE', win_key, (window_s + 1) * 1000)
if op == 'success' then
  -- Successes cannot trip the breaker; only prune so the hash stays ~2 fields per second.
  if redis.call('HLEN', win_key) > 2 * window_s + 4 then prune_and_count() end
  return {'closed', 'closed', 1, 0, ''}
end
local total, fails = prune_and_count()
if total >= min_requests and fails / total >= failure_ratio then
  trip(base_open_ms)
  return {'open', 'closed', 0, base_open_ms, ''}
end
return {'closed', 'closed', 1, 0, ''}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of :meth:`CircuitBreaker.allow`.

    ``allowed``: go ahead with the call. ``state``: the breaker state after this decision
    (``closed``, ``open``, ``half_open``, or ``unknown`` when Redis could not be reached and
    the breaker failed open). ``retry_after``: seconds to defer the work when refused (None
    when allowed). ``probe_token``: set when this caller holds a half-open probe slot; pass it
    (or this Decision) to ``record_success`` / ``record_failure``.
    """

    allowed: bool
    state: str
    retry_after: float | None = None
    probe_token: str | None = None

    @property
    def is_probe(self) -> bool:
        """True if this caller is a half-open probe and must report its outcome."""
        return self.probe_token is not None

    def __bool__(self) -> bool:
        return self.allowed


class CircuitBreaker:
    """A Redis-shared circuit breaker for one provider account (see the module docstring).

    Every method is one round trip (one Lua script run). The client should fail fast (no
    retries, short socket timeouts, as :meth:`from_settings` builds it): with a client that
    retries, the first call during an outage blocks for the client's whole retry budget
    before failing open; later calls through the same connection pool fail open at once for
    ``UNAVAILABLE_COOLDOWN_SECONDS``.
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        name: str,
        *,
        window_seconds: float = 30,
        min_requests: int = 20,
        failure_ratio: float = 0.5,
        open_seconds: float = 30,
        half_open_probes: int = 1,
        half_open_successes: int = 1,
        max_open_seconds: float = 300,
        backoff_multiplier: float = 2.0,
        probe_timeout_seconds: float = 30,
        unreachable_after: int = 0,
        on_state_change: StateChangeCallback | None = None,
        key_prefix: str = "notifyhub:cb",
    ) -> None:
        """``window_seconds`` is rounded up to whole seconds (the bucket size).
        ``backoff_multiplier=1`` keeps every re-open at ``open_seconds``.
        ``probe_timeout_seconds`` is the probe-slot lease: after it, an unreported probe's
        slot is given to the next caller. ``unreachable_after``: this many unreachable
        failures in a row open the breaker whatever the volume (0: off)."""
        if not name:
            raise ValueError("name must be non-empty")
        if window_seconds <= 0 or open_seconds <= 0 or probe_timeout_seconds <= 0:
            raise ValueError("window_seconds, open_seconds and probe_timeout_seconds must be > 0")
        if min_requests < 1 or half_open_probes < 1 or half_open_successes < 1:
            raise ValueError("min_requests, half_open_probes and half_open_successes must be >= 1")
        if not 0 < failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        if unreachable_after < 0:
            raise ValueError("unreachable_after must be >= 0")
        if backoff_multiplier < 1:
            raise ValueError("backoff_multiplier must be >= 1")
        self.name = name
        self.window_seconds = max(1, math.ceil(window_seconds))
        self.min_requests = min_requests
        self.failure_ratio = failure_ratio
        self.open_seconds = open_seconds
        self.max_open_seconds = max(max_open_seconds, open_seconds)
        self.backoff_multiplier = backoff_multiplier
        self.half_open_probes = half_open_probes
        self.half_open_successes = half_open_successes
        self.probe_timeout_seconds = probe_timeout_seconds
        self.unreachable_after = int(unreachable_after)
        self.on_state_change = on_state_change
        base = f"{key_prefix}:{{{name}}}"  # hash tag: all three keys in one cluster slot
        self._keys = [f"{base}:state", f"{base}:window", f"{base}:probes"]
        self._script = redis_client.register_script(_SCRIPT)
        self._guard = RedisGuard(redis_client, "circuit breaker", name, log)
        self._static_args: list[str | int] = [
            self.window_seconds,
            self.min_requests,
            repr(float(self.failure_ratio)),
            _ms(self.open_seconds),
            _ms(self.max_open_seconds),
            repr(float(self.backoff_multiplier)),
            self.half_open_probes,
            _ms(self.probe_timeout_seconds),
            STATE_TTL_SECONDS * 1000,
        ]

    @classmethod
    def from_settings(cls, name: str, **overrides: Any) -> CircuitBreaker:
        """A breaker on the shared fail-fast client (see ``client_from_settings``).

        Defaults come from ``settings.CIRCUIT_BREAKER`` (a dict of constructor keyword
        arguments, optional), then ``overrides``.
        """
        from django.conf import settings  # lazy

        options = {**getattr(settings, "CIRCUIT_BREAKER", {}), **overrides}
        return cls(client_from_settings(), name, **options)

    # -- public API -----------------------------------------------------------------------

    def allow(self) -> Decision:
        """May the caller call the provider now? Takes a half-open probe slot if one is free.

        Never raises for Redis problems and never refuses because of them: if Redis is
        unreachable the result is ``Decision(allowed=True, state="unknown")``.
        """
        token = uuid.uuid4().hex
        result = self._run("allow", token)
        if result is None:
            return Decision(True, UNKNOWN)
        state, allowed, retry_after_ms, probe_token = result
        if allowed:
            return Decision(True, state, None, probe_token or None)
        return Decision(False, state, retry_after_ms / 1000)

    def record_success(self, probe: Decision | str | None = None) -> str:
        """Report a successful call. Pass the probe's Decision/token if ``allow()`` gave one.

        Returns the state afterwards (``unknown`` if Redis is unreachable)."""
        return self._record("success", probe)

    def record_failure(self, probe: Decision | str | None = None, *,
                       unreachable: bool = False) -> str:
        """Report a failed call (count only failures that say the provider is unhealthy:
        timeouts, 5xx, connection errors -- not a 4xx for one bad recipient).
        ``unreachable``: the provider could not be reached at all (refused, reset, timeout).

        Returns the state afterwards (``unknown`` if Redis is unreachable)."""
        return self.record_failure_until(probe, unreachable=unreachable)[0]

    def record_failure_until(self, probe: Decision | str | None = None, *,
                             unreachable: bool = False) -> tuple[str, float]:
        """``record_failure``, and for how long the breaker stays open now (seconds; 0 when
        it is not open)."""
        token = probe.probe_token if isinstance(probe, Decision) else probe
        result = self._run("failure", token or "", unreachable=unreachable)
        if result is None:
            return UNKNOWN, 0.0
        state, _, retry_after_ms, _ = result
        return state, (retry_after_ms / 1000 if state == OPEN else 0.0)

    def record_successes(self, count: int) -> str:
        """Report `count` successful untokened calls in one round trip (a closed breaker
        counts them all; they never move a half-open one, as for ``record_success()``).

        Returns the state afterwards (``unknown`` if Redis is unreachable)."""
        if count < 1:
            return self.state()
        result = self._run("success", "", count=count)
        return UNKNOWN if result is None else result[0]

    def release(self, probe: Decision | str | None) -> None:
        """Give back a half-open probe slot whose caller made no call after all (e.g. the rate
        limit refused it): the next caller may probe at once instead of after the slot's
        lease. Does nothing for a non-probe decision."""
        token = probe.probe_token if isinstance(probe, Decision) else probe
        if token:
            self._run("release", token)

    def state(self) -> str:
        """The current state without changing it: ``closed``, ``open``, ``half_open`` (also
        for an open breaker whose open period has elapsed) or ``unknown``."""
        result = self._run("state", "")
        return UNKNOWN if result is None else result[0]

    def reset(self) -> None:
        """Force the breaker closed and forget its window, probes and back-off.

        Unlike the other methods this raises ``redis.RedisError`` if Redis is unreachable:
        it is an operator action, and silently doing nothing would mislead."""
        self._run("reset", "", fail_open=False)

    # -- internals ------------------------------------------------------------------------

    def _record(self, op: str, probe: Decision | str | None) -> str:
        token = probe.probe_token if isinstance(probe, Decision) else probe
        result = self._run(op, token or "")
        return UNKNOWN if result is None else result[0]

    def _run(self, op: str, token: str, *, fail_open: bool = True, count: int = 1,
             unreachable: bool = False) -> tuple[str, bool, int, str] | None:
        """Run the script; returns (state, allowed, retry_after_ms, token) or None when
        failing open. Fires ``on_state_change`` for a transition this call performed."""
        if fail_open and not self._guard.available():
            return None
        args: list[str | int] = [op, *self._static_args, token, _ms(HALF_OPEN_RETRY_SECONDS), count,
                                 self.half_open_successes, self.unreachable_after,
                                 1 if unreachable else 0]
        try:
            raw = self._script(keys=self._keys, args=args)
        except redis.RedisError as exc:
            if not fail_open:
                raise
            self._guard.failed(exc, op)
            return None
        self._guard.recovered()
        new, old, allowed, retry_after_ms, probe_token = (
            _text(raw[0]), _text(raw[1]), bool(raw[2]), int(raw[3]), _text(raw[4])
        )
        if old != new:
            self._notify(old, new)
        return new, allowed, retry_after_ms, probe_token

    def _notify(self, old: str, new: str) -> None:
        log.info("circuit breaker %r: %s -> %s", self.name, old, new)
        if self.on_state_change is None:
            return
        try:
            self.on_state_change(self.name, old, new)
        except Exception:
            log.exception("circuit breaker %r: on_state_change callback failed", self.name)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r}>"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
