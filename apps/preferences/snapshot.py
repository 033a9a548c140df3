"""`Preferences`: the immutable, cacheable view of a profile that the send-time check reads,
and the Django-cache layer that keeps one per recipient in Redis.

Cache protocol (no stale entry outlives a change):
- readers fill misses with `add` (SET NX), never overwriting;
- a change deletes the entries inside its transaction and, on commit, `set`s the fresh values,
  overwriting whatever a reader added from the old row in between;
- entries expire after PREFERENCES_CACHE_SECONDS anyway (default 1 h).
Recipients without a profile are cached too (the defaults), so a warm batch costs no query.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache

from .models import PreferenceProfile
from .timing import Window

logger = logging.getLogger(__name__)

# Bump when the cached shape changes: old entries are then simply never read again.
CACHE_SCHEMA = 1
DEFAULT_CACHE_SECONDS = 3600

_CACHE_ERRORS = (redis.RedisError, OSError)


@dataclass(frozen=True)
class Preferences:
    version: int = 0
    disabled_channels: frozenset[str] = frozenset()
    opted_out_categories: frozenset[str] = frozenset()
    quiet_hours: Window | None = None
    channel_quiet_hours: Mapping[str, Window] = field(default_factory=dict)
    timezone: str = ""  # override of the recipient's time zone; "" = the recipient's
    caps: Mapping[str, tuple[int, str]] = field(default_factory=dict)  # category → (limit, period)

    @classmethod
    def from_profile(cls, profile: PreferenceProfile) -> Preferences:
        return cls.from_values(
            version=profile.version, channels=profile.channels, categories=profile.categories,
            quiet_hours_start=profile.quiet_hours_start, quiet_hours_end=profile.quiet_hours_end,
            quiet_hours_timezone=profile.quiet_hours_timezone,
            frequency_caps=profile.frequency_caps,
        )

    @classmethod
    def from_values(
        cls, *, version: int, channels: Mapping[str, Any], categories: Mapping[str, Any],
        quiet_hours_start: time | None, quiet_hours_end: time | None,
        quiet_hours_timezone: str, frequency_caps: Mapping[str, Any],
    ) -> Preferences:
        channel_windows: dict[str, Window] = {}
        for name, spec in (channels or {}).items():
            text = (spec or {}).get("quiet_hours")
            if text:
                try:
                    channel_windows[name] = Window.parse(text)
                except ValueError:
                    logger.warning("ignoring malformed quiet hours %r for channel %s", text, name)
        window = None
        if quiet_hours_start is not None and quiet_hours_end is not None \
                and quiet_hours_start != quiet_hours_end:
            window = Window(quiet_hours_start, quiet_hours_end)
        caps = {
            str(category): (int(cap["limit"]), str(cap["period"]))
            for category, cap in (frequency_caps or {}).items()
            if isinstance(cap, Mapping) and cap.get("limit") and cap.get("period")
        }
        return cls(
            version=version,
            disabled_channels=frozenset(
                name for name, spec in (channels or {}).items()
                if (spec or {}).get("enabled", True) is False
            ),
            opted_out_categories=frozenset(
                str(name).lower() for name, enabled in (categories or {}).items() if enabled is False
            ),
            quiet_hours=window,
            channel_quiet_hours=channel_windows,
            timezone=quiet_hours_timezone or "",
            caps=caps,
        )

    def to_cache(self) -> dict[str, Any]:
        """Plain data only (no pickled classes): a refactoring never breaks a cached entry."""
        return {
            "v": self.version,
            "ch_off": sorted(self.disabled_channels),
            "cat_off": sorted(self.opted_out_categories),
            "qh": str(self.quiet_hours) if self.quiet_hours else "",
            "ch_qh": {name: str(window) for name, window in self.channel_quiet_hours.items()},
            "tz": self.timezone,
            "caps": {category: list(cap) for category, cap in self.caps.items()},
        }

    @classmethod
    def from_cache(cls, data: Mapping[str, Any]) -> Preferences:
        return cls(
            version=int(data["v"]),
            disabled_channels=frozenset(data["ch_off"]),
            opted_out_categories=frozenset(data["cat_off"]),
            quiet_hours=Window.parse(data["qh"]) if data["qh"] else None,
            channel_quiet_hours={name: Window.parse(text) for name, text in data["ch_qh"].items()},
            timezone=data["tz"],
            caps={category: (int(cap[0]), str(cap[1])) for category, cap in data["caps"].items()},
        )


DEFAULTS = Preferences()


def cache_key(recipient_id: Any) -> str:
    return f"preferences:v{CACHE_SCHEMA}:{recipient_id}"


def _timeout() -> int:
    return int(getattr(settings, "PREFERENCES_CACHE_SECONDS", DEFAULT_CACHE_SECONDS))


def _client(backend: Any) -> Any:
    """One redis client per cache backend object, kept: Django builds a new one (with its
    table of response callbacks) for every cache call. It only wraps the backend's pool."""
    client = backend.__dict__.get("_notifyhub_client")
    if client is None:
        client = backend._notifyhub_client = backend.get_client(None, write=True)
    return client


def cache_read(recipient_ids: Iterable[str]) -> dict[str, Preferences]:
    """The cached preferences among these recipients (one round trip); misses are absent."""
    keys = {cache_key(rid): rid for rid in recipient_ids}
    if not keys:
        return {}
    try:
        backend = getattr(cache, "_cache", None)
        if backend is None or not hasattr(backend, "get_client"):
            found = cache.get_many(list(keys))  # another cache backend
        else:
            made = [cache.make_and_validate_key(k) for k in keys]
            found = {k: backend._serializer.loads(v)
                     for k, v in zip(keys, _client(backend).mget(made), strict=True)
                     if v is not None}
    except _CACHE_ERRORS as exc:
        logger.warning("preferences cache unavailable, reading the database: %s", exc)
        return {}
    out: dict[str, Preferences] = {}
    for key, data in found.items():
        try:
            out[keys[key]] = Preferences.from_cache(data)
        except (KeyError, TypeError, ValueError):
            continue  # a malformed entry is a miss
    return out


# Readers' fills, one command per FILL_BATCH keys: SET NX with the expiry for each key
# (ARGV[1] the seconds, ARGV[i + 1] the value of KEYS[i]). A pipeline of one SET per recipient
# cost the client ~25 µs per command: 5 % of a worker's samples in a chunk of new recipients.
# Batches keep one script short (a send to 50,000 recipients reads their preferences too).
_FILL = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1], 'NX')
end
return #KEYS
"""
FILL_BATCH = 1000


def _fill_script(client: Any) -> Any:
    script = client.__dict__.get("_notifyhub_fill")
    if script is None:
        script = client._notifyhub_fill = client.register_script(_FILL)
    return script


def cache_fill(items: Mapping[str, Preferences]) -> None:
    """Caches what a reader loaded, without overwriting a newer value a writer has set: SET NX
    for every entry, one round trip per FILL_BATCH entries (Django's `add` is one round trip,
    and one client object, per key). Entries that share a Preferences object (the defaults)
    are serialized once."""
    if not items:
        return
    timeout = _timeout()
    try:
        backend = getattr(cache, "_cache", None)
        if backend is None or not hasattr(backend, "get_client") or timeout <= 0:
            for recipient_id, prefs in items.items():  # another cache backend: one by one
                cache.add(cache_key(recipient_id), prefs.to_cache(), timeout)
            return
        script = _fill_script(_client(backend))
        serialized: dict[int, bytes] = {}
        keys: list[str] = []
        values: list[bytes] = []
        for recipient_id, prefs in items.items():
            value = serialized.get(id(prefs))
            if value is None:
                value = serialized[id(prefs)] = backend._serializer.dumps(prefs.to_cache())
            keys.append(cache.make_and_validate_key(cache_key(recipient_id)))
            values.append(value)
        for start in range(0, len(keys), FILL_BATCH):
            script(keys=keys[start:start + FILL_BATCH],
                   args=[timeout, *values[start:start + FILL_BATCH]])
    except _CACHE_ERRORS as exc:
        logger.warning("preferences cache unavailable, not caching: %s", exc)


def cache_forget(recipient_ids: Iterable[str]) -> None:
    keys = [cache_key(rid) for rid in recipient_ids]
    if not keys:
        return
    try:
        cache.delete_many(keys)
    except _CACHE_ERRORS as exc:
        logger.error("preferences cache: could not invalidate %d entries: %s", len(keys), exc)


def cache_store(items: Mapping[str, Preferences]) -> None:
    """Writes fresh values after a change committed (overwrites a reader's stale `add`)."""
    if not items:
        return
    try:
        cache.set_many({cache_key(rid): prefs.to_cache() for rid, prefs in items.items()},
                       _timeout())
    except _CACHE_ERRORS as exc:
        logger.error("preferences cache: could not refresh %d entries: %s", len(items), exc)
        cache_forget(items)
