"""Reads for clients and API keys.

API keys are looked up on every request, so the active ones are cached in-process for
`API_KEY_CACHE_SECONDS` (default 5 s; 0 turns the cache off), keyed by the key's sha256 (the raw
key is never kept). A revoke, a scope change, a deleted key or a deactivated client clears the
cache of the process that made the change at once (signals below) and every other web process
within the TTL: a revoked key is refused everywhere at most `API_KEY_CACHE_SECONDS` later.
Unknown keys are not cached (a new key works at once)."""

from __future__ import annotations

import hmac
import threading
import time
from typing import Any

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import ApiKey, Client
from .services import hash_key, key_prefix

_cache: dict[str, tuple[float, ApiKey]] = {}
_cache_lock = threading.Lock()
_CACHE_MAX = 10_000


def _lookup(raw_key: str, digest: str) -> ApiKey | None:
    key = (
        ApiKey.objects.select_related("client")
        .filter(prefix=key_prefix(raw_key), revoked_at__isnull=True, client__is_active=True)
        .first()
    )
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        return None
    return key


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key matching `raw_key`, with its client, or None. Constant-time compare.
    Served from the in-process cache when it was checked less than API_KEY_CACHE_SECONDS ago."""
    if not raw_key or len(raw_key) < 20 or len(raw_key) > 200:
        return None
    digest = hash_key(raw_key)
    ttl = float(getattr(settings, "API_KEY_CACHE_SECONDS", 0) or 0)
    if ttl <= 0:
        return _lookup(raw_key, digest)
    now = time.monotonic()
    cached = _cache.get(digest)
    if cached is not None and cached[0] > now:
        return cached[1]
    key = _lookup(raw_key, digest)
    if key is not None:
        with _cache_lock:
            if len(_cache) >= _CACHE_MAX:
                _cache.clear()
            _cache[digest] = (now + ttl, key)
    return key


def api_key_cache_clear() -> None:
    """Forgets every cached key (this process)."""
    with _cache_lock:
        _cache.clear()


@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=ApiKey)
@receiver(post_save, sender=Client)
@receiver(post_delete, sender=Client)
def _key_or_client_changed(**kwargs: Any) -> None:
    api_key_cache_clear()
