"""A client's configuration generation: what lets a web process keep a copy of a client's
configuration (today: the templates a send reads, apps/notifications/bulk.py `_templates`)
and know, without a round trip of its own, whether the copy is still good.

The generation is a random token in Redis (the API limits' Redis, beside the throttle's
counters). The throttle's script (throttling.py) reads it in the same call that counts the
request, so a request learns it before it reads the database. Every write to what is cached
replaces the token after its commit (`client_config_changed`), so a copy read before a commit
can never be filed under a token of after it: a copy is used only while its token is the
current one.

- A missing token (a new client, a flushed or restarted Redis) is set by the reading script
  to a fresh random value; tokens are never reused, so a flush cannot revive a stale copy.
- Writers also replace the token at once, inside their transaction: a later request of a
  test's never-committed transaction, or one that reads between the write and its commit,
  reads the database (the copy it files is dropped by the bump after commit).
- If Redis refuses a bump, copies live out their TTL (`GenerationCache`, 60 s): the bound on
  how long a send can use a template version replaced meanwhile. The same bound holds for a
  write that bypasses the services (SQL by hand, a data migration).
- Without a token (throttle off for the client, Redis unreachable) nothing is cached or
  read from the cache: every request reads the database, as before.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

import redis
from django.db import transaction

from .limits_store import limits_redis

logger = logging.getLogger(__name__)

KEY = "notifyhub:config-generation:{client}"
# A token unused this long expires; the next request sets a new one (a cache miss, no more).
TOKEN_TTL_SECONDS = 7 * 86_400


def client_generation_key(client_id: Any) -> str:
    return KEY.format(client=client_id)


def new_token() -> str:
    return secrets.token_hex(8)


def request_client_generation(request: Any) -> str | None:
    """The generation the throttle read for this request (None: not known, do not cache)."""
    return getattr(request, "notifyhub_client_generation", None)


def remember_client_generation(request: Any, token: str | None) -> None:
    request.notifyhub_client_generation = token


def _bump(client_id: Any) -> None:
    try:
        limits_redis().set(client_generation_key(client_id), new_token(), ex=TOKEN_TTL_SECONDS)
    except redis.RedisError as exc:
        logger.warning("could not replace the configuration generation of client %s; cached "
                       "copies expire within %d s (%s)", client_id, GenerationCache.ttl_default,
                       exc)


def client_config_changed(*, client_id: Any) -> None:
    """Call from every service that writes what a web process caches about a client (inside
    its transaction): replaces the client's generation now and again after commit."""
    _bump(client_id)
    transaction.on_commit(lambda: _bump(client_id))


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class GenerationCache(Generic[K, V]):
    """A process's bounded map of values filed under the generation they were read at: `get`
    gives a value only for the same generation and within `ttl` seconds of its read. Shared
    by threads; a full map is emptied (the next reads refill it)."""

    ttl_default = 60.0

    def __init__(self, *, max_entries: int = 1024, ttl: float = ttl_default) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self._entries: dict[K, tuple[str, float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K, generation: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] != generation or entry[1] < time.monotonic():
            return None
        return entry[2]

    def put(self, key: K, generation: str, value: V) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries and key not in self._entries:
                self._entries.clear()
            self._entries[key] = (generation, time.monotonic() + self.ttl, value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
