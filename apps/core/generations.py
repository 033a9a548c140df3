"""Process-local copies validated by a generation: a random token in Redis that every write
to what is copied replaces, at once and again after its commit (`now_and_after_commit`). A
reader that learns the current token before it reads the database files its copy under that
token (`GenerationCache`); a commit after the read replaces the token, so the stale copy is
never served again. Copies also expire after a TTL: the bound on staleness when a replacement
is lost (Redis down at the write) or a write bypasses the services.

Used by the webhook subscriptions (apps/webhooks/outbound/outbox.py, one generation for all
clients) and a client's templates (apps/clients/config_generation.py, one per client)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from django.db import transaction

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def now_and_after_commit(replace: Callable[[], None]) -> None:
    """Runs `replace` (a generation's replacement) now and again after the current
    transaction commits: a reader between the write and its commit reads the database, and
    what it files under the token of that moment is dropped by the second replacement."""
    replace()
    transaction.on_commit(replace)


class GenerationCache(Generic[K, V]):
    """A process's bounded map of values filed under the generation they were read at: `get`
    gives a value only for the same generation and within the TTL of its `put` (`ttl` seconds,
    unless the put names its own). Shared by threads; a full map is emptied (the next reads
    refill it)."""

    ttl_default = 60.0

    def __init__(self, *, max_entries: int = 1024, ttl: float = ttl_default) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self._entries: dict[K, tuple[Hashable, float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K, generation: Hashable) -> V | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] != generation or entry[1] < time.monotonic():
            return None
        return entry[2]

    def put(self, key: K, generation: Hashable, value: V, *, ttl: float | None = None) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries and key not in self._entries:
                self._entries.clear()
            expires = time.monotonic() + (self.ttl if ttl is None else ttl)
            self._entries[key] = (generation, expires, value)
