"""A process's copies filed under a generation (apps/core/generations.py): served only at
their own generation and within their TTL, and a full map starts over."""

from __future__ import annotations

from typing import Any

from apps.core.generations import GenerationCache


def test_a_copy_is_served_only_at_its_generation_and_within_its_ttl(monkeypatch: Any) -> None:
    clock = [1000.0]
    monkeypatch.setattr("apps.core.generations.time.monotonic", lambda: clock[0])
    cache: GenerationCache[str, int] = GenerationCache(ttl=60)
    cache.put("k", "g1", 1)

    assert cache.get("k", "g1") == 1
    assert cache.get("k", "g2") is None
    assert cache.get("other", "g1") is None
    clock[0] += 61
    assert cache.get("k", "g1") is None


def test_a_full_cache_starts_over() -> None:
    cache: GenerationCache[int, int] = GenerationCache(max_entries=3)
    for i in range(3):
        cache.put(i, "g", i)
    cache.put(0, "g", 10)  # replacing an entry keeps the others
    assert [cache.get(i, "g") for i in range(3)] == [10, 1, 2]

    cache.put(3, "g", 3)

    assert [cache.get(i, "g") for i in range(4)] == [None, None, None, 3]
