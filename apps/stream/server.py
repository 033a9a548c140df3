"""The stream's connections: an asyncio protocol per TCP connection, no task while it is live.

A connection's life:
1. its request head is read (at most `MAX_HEAD_BYTES`, within `head_timeout` seconds);
2. the token (`?token=` or `Authorization: Bearer`) is checked, then the `Origin` against the
   client's allowed origins, each a short database read in the pool: an error is a JSON
   answer (401, 403 …) and the connection closes;
3. it is added to the hub (subscribed) BEFORE anything is read from the database, and the
   response head and a `retry:` hint are written;
4. after `Last-Event-ID` (the header, or `?last_event_id=` for the widget's own reconnects)
   the missed messages are replayed from PostgreSQL, oldest first, a page at a time; then the
   inbox's counts. Live events that arrived meanwhile wait in a bounded list;
5. live: each event is written as the hub hands it over; a message whose seq is not above
   the last one written is dropped (replayed already), and one that skips a seq makes the
   connection catch up from the database first (no gap, whatever order the publishes
   arrived in).

A stream ends when its token expires (checked every `EXPIRY_CHECK_SECONDS`, with the
heartbeat's pass): a last `token_expired` event, then the connection closes (the client
reconnects with a fresh token and Last-Event-ID; the widget does).

A heartbeat comment goes to every connection every `heartbeat_seconds`. A slow consumer (more
than `max_buffer_bytes` unsent, or more than `queue_size` events waiting while it catches up)
is disconnected at once (`abort`: its buffers are freed, whatever the peer does); the browser
reconnects with Last-Event-ID and the replay brings it up to date. Memory per connection is
bounded by those two numbers."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, cast

from django.db import DatabaseError

from . import inbox, sse
from . import metrics as m
from .http import (
    MAX_HEAD_BYTES,
    BadRequest,
    Request,
    error_response,
    json_response,
    parse_head,
    response_head,
)
from .hub import Event, Hub
from .inbox import Database, Principal, Unauthorized

logger = logging.getLogger(__name__)

STREAM_PATH = "/api/v1/inbox/stream"
HEALTH_PATH = "/api/v1/inbox/stream/health"
MAX_DISCARDED_BYTES = 64 * 1024  # a client sends nothing after its head
# After its token_expired event a stream closes gracefully (what is buffered is sent); a peer
# that does not read it within this is cut off.
CLOSE_GRACE_SECONDS = 5.0
# How often streams are checked for an expired token (at most; the heartbeat interval when it
# is shorter): a stream ends within this of its token's `exp`.
EXPIRY_CHECK_SECONDS = 5.0
_SEQ = re.compile(r"^[0-9]{1,18}$")

HEAD, OPENING, CATCHING_UP, LIVE, CLOSED = "head", "opening", "catching_up", "live", "closed"


@dataclass(frozen=True)
class Config:
    redis_url: str
    heartbeat_seconds: float = 30.0
    retry_ms: int = 3000
    queue_size: int = 100
    max_buffer_bytes: int = 256 * 1024
    replay_page: int = 200
    db_threads: int = 4
    max_connections: int = 20_000
    head_timeout: float = 10.0

    @classmethod
    def from_settings(cls) -> Config:
        from django.conf import settings

        return cls(
            redis_url=settings.INBOX_REDIS_URL,
            heartbeat_seconds=float(settings.INBOX_STREAM_HEARTBEAT_SECONDS),
            retry_ms=int(settings.INBOX_STREAM_RETRY_MS),
            queue_size=int(settings.INBOX_STREAM_QUEUE_SIZE),
            max_buffer_bytes=int(settings.INBOX_STREAM_MAX_BUFFER_BYTES),
            replay_page=int(settings.INBOX_STREAM_REPLAY_PAGE),
            db_threads=int(settings.INBOX_STREAM_DB_THREADS),
            max_connections=int(settings.INBOX_STREAM_MAX_CONNECTIONS),
        )


class Connection(asyncio.Protocol):
    def __init__(self, server: StreamServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.state = HEAD
        self.buffer = bytearray()
        self.discarded = 0
        self.principal: Principal | None = None
        self.last: int | None = None  # the last message seq written (or replayed through)
        self.pending: list[Event] = []  # events that arrived while catching up
        self.again = False  # catch up once more (the subscription came back meanwhile)
        # The head's deadline, then (after a token_expired event) the grace of a closing stream.
        self.timer: asyncio.TimerHandle | None = None
        self.opener: asyncio.Task[None] | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server.connections.add(self)
        self.timer = asyncio.get_running_loop().call_later(
            self.server.config.head_timeout, self.abort)

    def data_received(self, data: bytes) -> None:
        if self.state != HEAD:
            self.discarded += len(data)
            if self.discarded > MAX_DISCARDED_BYTES:
                self.abort()
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                self.answer(error_response(431, "request_too_large", "The request head is too large."))
            return
        if end > MAX_HEAD_BYTES:
            self.answer(error_response(431, "request_too_large", "The request head is too large."))
            return
        head = bytes(self.buffer[:end])
        self.buffer = bytearray()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        try:
            request = parse_head(head)
        except BadRequest as exc:
            self.answer(error_response(exc.status, "bad_request", str(exc)))
            return
        self.state = OPENING
        self.opener = self.server.spawn(self.server.open(self, request))

    def eof_received(self) -> bool:
        return False  # the peer closed its side: close ours

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.opener is not None and not self.opener.done():
            self.opener.cancel()
        self.server.forget(self)

    # -- writing --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state == CLOSED or self.transport is None or self.transport.is_closing()

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        assert self.transport is not None
        self.transport.write(data)
        if self.transport.get_write_buffer_size() > self.server.config.max_buffer_bytes:
            self.server.slow_consumer()
            self.abort()

    def answer(self, response: bytes) -> None:
        """A complete response (an error): written, then the connection closes."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()
        self.state = CLOSED

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.state = CLOSED

    def expire(self) -> None:
        """The token expired: a last `token_expired` event, then the connection closes."""
        if self.closed:
            return
        self.server.stats["token_expired"] += 1
        m.TOKEN_EXPIRED_SENT.inc()
        self.write(sse.token_expired_frame())
        if self.closed:  # the write cut a slow consumer off
            return
        assert self.transport is not None
        self.state = CLOSED
        self.transport.close()
        self.timer = asyncio.get_running_loop().call_later(CLOSE_GRACE_SECONDS, self.abort)

    # -- events ---------------------------------------------------------------------------

    def deliver(self, event: Event) -> None:
        """From the hub, for this connection's recipient."""
        if self.state == LIVE:
            self.apply(event)
        elif self.state in (OPENING, CATCHING_UP):
            self.pending.append(event)
            if len(self.pending) > self.server.config.queue_size:
                self.server.slow_consumer()
                self.abort()

    def apply(self, event: Event) -> None:
        if event.kind == "message":
            assert event.seq is not None
            if self.last is not None and event.seq <= self.last:
                return  # replayed already
            if self.last is not None and event.seq > self.last + 1:
                # A seq was skipped (publishes raced, or one was lost): the database has it,
                # as a message is committed before it is published.
                self.pending.append(event)
                self.catch_up(counts=False)
                return
            self.last = event.seq
            m.MESSAGES_SENT.inc()
        else:
            m.COUNTS_SENT.inc()
        self.write(event.frame)

    def catch_up(self, *, counts: bool) -> None:
        if self.state == LIVE:
            self.state = CATCHING_UP
            self.server.spawn(self.server.catch_up(self, counts=counts))
        elif self.state in (OPENING, CATCHING_UP):
            self.again = True

    def go_live(self) -> None:
        self.state = LIVE
        waiting, self.pending = self.pending, []
        for index, event in enumerate(waiting):
            self.apply(event)
            if self.state != LIVE:  # closed, or a gap started another catch-up
                self.pending.extend(waiting[index + 1:])
                return


class StreamServer:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.db = Database(config.db_threads)
        self.hub = Hub(config.redis_url, on_resync=self.resync)
        self.connections: set[Connection] = set()
        self.streaming: set[Connection] = set()  # response head written
        self.tasks: set[asyncio.Task[Any]] = set()
        self.stats = {"opened": 0, "unauthorized": 0, "forbidden_origin": 0,
                      "replayed_messages": 0, "slow_consumers_dropped": 0, "catch_ups": 0,
                      "token_expired": 0}
        self.listener: asyncio.Server | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.started_at = time.time()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str, port: int, *, backlog: int = 4096) -> None:
        loop = asyncio.get_running_loop()
        self.hub.start()
        self.listener = await loop.create_server(lambda: Connection(self), host, port,
                                                 backlog=backlog, reuse_address=True)
        self._heartbeat = loop.create_task(self._beat(), name="inbox-stream-heartbeat")

    @property
    def port(self) -> int:
        assert self.listener is not None
        return int(self.listener.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stops accepting and ends every stream (browsers reconnect elsewhere with
        Last-Event-ID)."""
        if self.listener is not None:
            self.listener.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for task in list(self.tasks):
            task.cancel()
        await self.hub.stop()
        await asyncio.sleep(0.1)  # let the closing transports flush
        for conn in list(self.connections):
            conn.abort()
        self.db.close()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def forget(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if conn in self.streaming:
            self.streaming.discard(conn)
            m.CONNECTIONS.set(len(self.streaming))
        if conn.principal is not None:
            self.hub.remove(conn.principal.key, conn)

    def slow_consumer(self) -> None:
        self.stats["slow_consumers_dropped"] += 1
        m.SLOW_CONSUMERS.inc()

    def health(self) -> dict[str, Any]:
        return {"status": "ok" if self.hub.subscribed.is_set() else "degraded",
                "subscribed": self.hub.subscribed.is_set(),
                "connections": len(self.streaming), **self.stats,
                "events_received": self.hub.events_received}

    # -- one connection -------------------------------------------------------------------

    async def open(self, conn: Connection, request: Request) -> None:
        try:
            await self._open(conn, request)
        except DatabaseError:
            logger.warning("inbox stream: database unavailable while opening a stream")
            if conn.state == OPENING and conn not in self.streaming:
                conn.answer(error_response(503, "service_unavailable", "Try again shortly.",
                                           headers=[("Retry-After", "5")]))
            else:
                conn.abort()

    async def _open(self, conn: Connection, request: Request) -> None:
        if request.path == HEALTH_PATH and request.method == "GET":
            conn.answer(json_response(200, self.health()))
            return
        if request.path != STREAM_PATH:
            conn.answer(error_response(404, "not_found", "Not found."))
            return
        origin = request.header("origin") or ""
        if request.method == "OPTIONS":
            allowed = bool(origin) and await self.db.run(inbox.origin_allowed_by_any, origin)
            conn.answer(_preflight(origin if allowed else ""))
            return
        if request.method != "GET":
            conn.answer(error_response(405, "method_not_allowed", "Use GET.",
                                       headers=[("Allow", "GET, OPTIONS")]))
            return
        if len(self.streaming) >= self.config.max_connections:
            conn.answer(error_response(503, "too_many_connections", "Try again shortly.",
                                       headers=[("Retry-After", "5")]))
            return
        last = request.header("last-event-id") or request.param("last_event_id")
        if last is not None and not _SEQ.match(last.strip()):
            conn.answer(error_response(400, "invalid", "Last-Event-ID must be a message's id.",
                                       {"last_event_id": ["Must be a non-negative integer."]}))
            return
        try:
            principal = await self.db.run(inbox.authenticate, _token(request))
        except Unauthorized as exc:
            self.stats["unauthorized"] += 1
            m.AUTH_FAILURES.labels(code=exc.code).inc()
            # Readable by an origin some client allows, so a widget knows to get a new token.
            readable = bool(origin) and await self.db.run(inbox.origin_allowed_by_any, origin)
            conn.answer(error_response(401, exc.code, str(exc), {"token": [str(exc)]},
                                       headers=_cors(origin) if readable else [("Vary", "Origin")]))
            return
        if origin and not await self.db.run(inbox.origin_allowed, principal.client_id, origin):
            self.stats["forbidden_origin"] += 1
            m.AUTH_FAILURES.labels(code="origin_not_allowed").inc()
            conn.answer(error_response(403, "origin_not_allowed",
                                       "This origin is not allowed for the client's inbox.",
                                       headers=[("Vary", "Origin")]))
            return
        if conn.closed:
            return
        conn.principal = principal
        self.hub.add(principal.key, conn)  # subscribed before anything is read from the database
        # Without Last-Event-ID the stream starts after the newest message (the page lists
        # what is older); known from the start, a gap or a lost subscription can be filled.
        conn.last = int(last) if last is not None else await self.db.run(inbox.latest_seq, principal)
        if conn.closed:
            return
        self.streaming.add(conn)
        m.CONNECTIONS.set(len(self.streaming))
        self.stats["opened"] += 1
        conn.write(_stream_head(_cors(origin) if origin else []) + sse.retry_frame(self.config.retry_ms))
        await self._catch_up(conn, counts=True, replay=last is not None)

    async def catch_up(self, conn: Connection, *, counts: bool) -> None:
        self.stats["catch_ups"] += 1
        try:
            await self._catch_up(conn, counts=counts)
        except DatabaseError:
            logger.warning("inbox stream: database unavailable while catching up; closing")
            conn.abort()

    async def _catch_up(self, conn: Connection, *, counts: bool, replay: bool = True) -> None:
        """Replay after conn.last, then (with `counts`) the counts; then live. Runs again when
        the subscription came back meanwhile."""
        assert conn.principal is not None
        while True:
            conn.again = False
            if replay and conn.last is not None:
                await self._replay(conn)
            if counts:
                # Counts published before this read are older than what it returns.
                stale = len(conn.pending)
                current = await self.db.run(inbox.counts, conn.principal)
                conn.pending = [e for i, e in enumerate(conn.pending) if e.kind != "counts" or i >= stale]
                conn.write(sse.counts_frame(current))
                m.COUNTS_SENT.inc()
            if conn.closed:
                return
            if not conn.again:
                break
            counts = replay = True
        conn.go_live()

    async def _replay(self, conn: Connection) -> None:
        assert conn.principal is not None and conn.last is not None
        page = self.config.replay_page
        while not conn.closed:
            rows = await self.db.run(inbox.messages_after, conn.principal, conn.last, page)
            for seq, message in rows:
                if seq > conn.last:
                    conn.write(sse.message_frame(seq, message))
                    conn.last = seq
                    self.stats["replayed_messages"] += 1
                    m.MESSAGES_SENT.inc()
            if len(rows) < page:
                return

    # -- every connection -----------------------------------------------------------------

    def resync(self) -> None:
        """The hub subscribed (again): whatever was published meanwhile was not received."""
        for conn in list(self.streaming):
            conn.catch_up(counts=True)

    async def _beat(self) -> None:
        """Every tick: the streams whose token expired end; every `heartbeat_seconds`, a
        heartbeat to the others. One pass over the streams instead of a timer per stream (a
        uvloop timer handle is ~550 bytes, against ~4 KiB for the whole connection)."""
        beat_every = self.config.heartbeat_seconds
        tick = min(beat_every, EXPIRY_CHECK_SECONDS)
        next_beat = time.monotonic() + beat_every
        while True:
            await asyncio.sleep(tick)
            beat = time.monotonic() >= next_beat - tick / 10
            if beat:
                next_beat = time.monotonic() + beat_every
            now = time.time()
            for conn in list(self.streaming):
                if conn.principal is not None and conn.principal.expires_at <= now:
                    conn.expire()
                elif beat:
                    conn.write(sse.HEARTBEAT)


def _token(request: Request) -> str:
    authorization = request.header("authorization") or ""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.param("token") or ""


def _cors(origin: str) -> list[tuple[str, str]]:
    return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]


def _stream_head(cors: list[tuple[str, str]]) -> bytes:
    return response_head(200, [
        ("Content-Type", "text/event-stream; charset=utf-8"),
        ("Cache-Control", "no-cache, no-store"),
        # nginx: do not buffer the stream.
        ("X-Accel-Buffering", "no"),
        ("Connection", "close"),
        *cors,
    ])


def _preflight(origin: str) -> bytes:
    """A preflight carries no token, so it cannot name the client: it is answered for an origin
    that some client allows (apps/inbox/cors.py), and the GET itself is refused (403) when the
    token's client does not allow it. Any other origin gets no CORS headers: a refusal."""
    headers = [("Content-Length", "0"), ("Connection", "close"), ("Vary", "Origin")]
    if origin:
        headers += [("Access-Control-Allow-Origin", origin),
                    ("Access-Control-Allow-Methods", "GET, OPTIONS"),
                    ("Access-Control-Allow-Headers", "Authorization, Last-Event-ID, Cache-Control"),
                    ("Access-Control-Max-Age", "600")]
    return response_head(204, headers)
