"""What the stream needs from apps/inbox, and the thread pool its database reads run in.

The stream process is asyncio; Django's ORM is synchronous. Every read here is one short
query run in a small pool of threads (`INBOX_STREAM_DB_THREADS`, each with its own database
connection): a connection to the stream holds no database connection, and a reconnect storm
queues on the pool instead of opening thousands of database sessions."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import close_old_connections

from apps.inbox import cors

# Redis channels: notifyhub:inbox:<client_id>:<recipient_pk> (apps/inbox/live.py publishes).
from apps.inbox.live import CHANNEL_PATTERN, CHANNEL_PREFIX
from apps.inbox.models import InboxCounter
from apps.inbox.selectors import inbox_counts, message_payload
from apps.inbox.selectors import messages_after as select_messages_after
from apps.inbox.tokens import InvalidInboxToken, read_inbox_token

T = TypeVar("T")

__all__ = ["CHANNEL_PATTERN", "CHANNEL_PREFIX", "Database", "Principal", "Unauthorized",
           "authenticate", "counts", "latest_seq", "messages_after", "origin_allowed",
           "origin_allowed_by_any"]


@dataclass(frozen=True)
class Principal:
    """Whose inbox a token opens."""

    client_id: str
    recipient_pk: str
    recipient_id: str
    expires_at: float = float("inf")  # the token's expiry (Unix time): the stream ends then

    @property
    def key(self) -> str:
        """The part of the Redis channel after CHANNEL_PREFIX."""
        return f"{self.client_id}:{self.recipient_pk}"


class Unauthorized(Exception):
    """The token is missing, invalid, tampered with or expired (→ 401 with this code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def authenticate(token: str) -> Principal:
    """The recipient a token names; raises Unauthorized."""
    try:
        principal = read_inbox_token(token)
    except InvalidInboxToken as exc:
        raise Unauthorized(exc.code, str(exc)) from exc
    expires_at = principal.expires_at.timestamp() if principal.expires_at else float("inf")
    return Principal(str(principal.client_id), str(principal.recipient_pk),
                     str(principal.recipient_id), expires_at)


def origin_allowed(client_id: str, origin: str) -> bool:
    """Whether the client allows `origin` (its `inbox_allowed_origins`, cached per process)."""
    return bool(cors.origin_allowed(client_id, origin))


def origin_allowed_by_any(origin: str) -> bool:
    """Whether some client allows `origin`: enough for a preflight or a 401, which carry no
    client's data."""
    return bool(cors.origin_allowed_by_any(origin))


def messages_after(principal: Principal, seq: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
    """(seq, the message as the API shows it) of the messages after `seq`, oldest first."""
    return [(int(m.seq), message_payload(m))
            for m in select_messages_after(principal.client_id, principal.recipient_pk, seq, limit)]


def latest_seq(principal: Principal) -> int:
    """The recipient's last seq given so far (0: none): where a stream opened without
    Last-Event-ID starts, so that a gap or a lost subscription can be filled from it."""
    found = (InboxCounter.objects.filter(recipient_id=principal.recipient_pk)
             .values_list("last_seq", flat=True).first())
    return int(found or 0)


def counts(principal: Principal) -> dict[str, Any]:
    return dict(inbox_counts(principal.client_id, principal.recipient_pk).as_dict())


class Database:
    """Runs synchronous ORM reads in a bounded thread pool, as a request would: connections
    past their CONN_MAX_AGE, or broken, are closed before and after."""

    def __init__(self, threads: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="stream-db")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, functools.partial(_in_request, fn, *args))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _in_request(fn: Callable[..., T], *args: Any) -> T:
    close_old_connections()
    try:
        return fn(*args)
    finally:
        close_old_connections()
