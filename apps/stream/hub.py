"""One Redis pub/sub connection per stream process, fanning inbox events out in-process.

The hub holds ONE pattern subscription (`notifyhub:inbox:*`) and a map from a recipient's
channel key to the connections open for that recipient in this process. Each published event
is decoded and framed once, then handed to each of those connections (no Redis connection,
no task, per client connection). When the subscription is lost (Redis restarted, network),
the hub reconnects with back-off and then asks every connection to resynchronise from the
database (`on_resync`): events published meanwhile were not received, but they are in
PostgreSQL, and a replay after the connection's last sequence number finds them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from . import sse
from .inbox import CHANNEL_PATTERN, CHANNEL_PREFIX

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    kind: str  # "message" | "counts"
    seq: int | None  # a message's sequence number
    frame: bytes  # the SSE bytes, framed once for every connection


class Subscriber(Protocol):
    def deliver(self, event: Event) -> None: ...


def decode(data: bytes | str) -> Event | None:
    """`{"type": "message", "seq": N, "message": {...}}` or `{"type": "counts", ...}`."""
    try:
        body = json.loads(data)
        kind = body.get("type")
        if kind == "message":
            seq = int(body["seq"])
            return Event("message", seq, sse.message_frame(seq, body["message"]))
        if kind == "counts":
            return Event("counts", None, sse.counts_frame(body))
    except (ValueError, TypeError, KeyError, AttributeError):
        pass
    logger.warning("inbox stream: ignored an event that is not one of ours")
    return None


class Hub:
    def __init__(self, redis_url: str, *, on_resync: Callable[[], None] | None = None,
                 max_backoff: float = 5.0) -> None:
        self.redis_url = redis_url
        self.on_resync = on_resync or (lambda: None)
        self.max_backoff = max_backoff
        self.subscribers: dict[str, set[Subscriber]] = {}
        self.subscribed = asyncio.Event()
        self.events_received = 0
        self.resyncs = 0
        self._task: asyncio.Task[None] | None = None

    # -- connections ----------------------------------------------------------------------

    def add(self, key: str, subscriber: Subscriber) -> None:
        self.subscribers.setdefault(key, set()).add(subscriber)

    def remove(self, key: str, subscriber: Subscriber) -> None:
        found = self.subscribers.get(key)
        if found is not None:
            found.discard(subscriber)
            if not found:
                del self.subscribers[key]

    def dispatch(self, channel: str, data: bytes | str) -> None:
        self.events_received += 1
        targets = self.subscribers.get(channel.removeprefix(CHANNEL_PREFIX))
        if not targets:
            return
        event = decode(data)
        if event is None:
            return
        for subscriber in list(targets):  # a delivery may close (and remove) its connection
            subscriber.deliver(event)

    # -- the subscription -----------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="inbox-stream-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            client: Any = aioredis.Redis.from_url(self.redis_url, health_check_interval=30)
            pubsub = client.pubsub()
            try:
                await pubsub.psubscribe(CHANNEL_PATTERN)
                # psubscribe returns once sent; the confirmation is the first message read.
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=5.0)
                    if message and message["type"] == "psubscribe":
                        break
                self.subscribed.set()
                backoff = 0.1
                # Connections opened (or live) while there was no subscription missed events:
                # each replays from its last sequence number. At the first start there are none.
                self.resyncs += 1
                self.on_resync()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=30.0)
                    if message is not None and message["type"] == "pmessage":
                        channel = message["channel"]
                        self.dispatch(channel.decode() if isinstance(channel, bytes) else channel,
                                      message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                logger.warning("inbox stream: Redis subscription lost (%s); retrying in %.1f s",
                               type(exc).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            finally:
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except (RedisError, OSError):
                    pass
