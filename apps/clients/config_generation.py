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
- If Redis refuses a bump, copies live out their TTL (apps/core/generations.py
  `GenerationCache`, 60 s): the bound on
  how long a send can use a template version replaced meanwhile. The same bound holds for a
  write that bypasses the services (SQL by hand, a data migration).
- Without a token (throttle off for the client, Redis unreachable) nothing is cached or
  read from the cache: every request reads the database, as before.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import redis

from apps.core.generations import GenerationCache, now_and_after_commit

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
    now_and_after_commit(lambda: _bump(client_id))
