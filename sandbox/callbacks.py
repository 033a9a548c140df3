"""Generic asynchronous webhook dispatcher used by every provider.

Events are buffered and POSTed in batches (every ``interval`` seconds, or as soon
as ``max_batch`` events are waiting).  Failed batches are retried with
exponential backoff and re-signed on every attempt, so providers with
timestamped signatures (SendGrid) always send a fresh timestamp.

At most ``max_inflight`` POSTs run at once *per target origin* (scheme, host,
port), and a batch holds its slot only while its POST is in progress, never
while it waits for a retry: a receiver that is down (or a StatusCallback URL
nobody listens on any more) cannot keep the callbacks for other targets
waiting.  An exception in one send is logged and counted, never stops the
dispatcher.

The dispatcher knows nothing about a particular provider: it takes a URL, a
body encoder, static headers and an optional :class:`Signer`.  SendGrid uses a
JSON array per batch; Twilio posts one form-encoded event per request
(``max_batch=1``) to a URL chosen per event (``url_for``: each message's
StatusCallback).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import aiohttp
from yarl import URL

log = logging.getLogger("sandbox.callbacks")

RETRYABLE_4XX = frozenset({408, 429})
ANSWER_CLASSES = ("answers_2xx", "answers_3xx", "answers_4xx", "answers_5xx", "answers_none")


def answer_class(status: int | None) -> str:
    """The stats key counting a callback answer with this HTTP status (None: no answer)."""
    if status is None or not 200 <= status <= 599:
        return "answers_none"
    return f"answers_{status // 100}xx"


class Signer(Protocol):
    def headers(self, url: str, body: bytes) -> Mapping[str, str]:
        """Headers authenticating ``body`` for one delivery attempt."""
        ...


Encoder = Callable[[Sequence[Any]], bytes]


def json_array_encoder(events: Sequence[Any]) -> bytes:
    """Compact JSON array followed by CRLF, byte-for-byte how SendGrid posts events.

    The trailing ``\\r\\n`` is part of the signed payload, so receivers must verify
    the raw request body rather than a re-serialised one.
    """
    text = json.dumps(list(events), separators=(",", ":"), ensure_ascii=False)
    return (text + "\r\n").encode("utf-8")


class CallbackDispatcher:
    def __init__(
        self,
        name: str,
        url: str,
        *,
        signer: Signer | None = None,
        headers: Mapping[str, str] | None = None,
        encoder: Encoder = json_array_encoder,
        content_type: str = "application/json",
        interval: float = 0.2,
        max_batch: int = 500,
        max_inflight: int = 4,
        retry_base: float = 0.5,
        retry_cap: float = 10.0,
        max_attempts: int = 20,
        request_timeout: float = 10.0,
        url_for: Callable[[Any], str] | None = None,
    ) -> None:
        if max_batch < 1 or max_inflight < 1 or max_attempts < 1:
            raise ValueError("max_batch, max_inflight and max_attempts must be >= 1")
        self.name = name
        self.url = url
        self.signer = signer
        self.static_headers = {"Content-Type": content_type, **(headers or {})}
        self.encoder = encoder
        self.interval = interval
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.max_attempts = max_attempts
        self.request_timeout = request_timeout
        # Per-event target URL; consecutive events for the same URL share a batch.
        self.url_for = url_for

        self._buffer: deque[Any] = deque()
        self._full = asyncio.Event()
        # origin ("scheme://host:port") -> POSTs allowed to run at once to it
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._session: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None
        # in-flight delivery task -> number of events it carries
        self._inflight: dict[asyncio.Task[None], int] = {}
        # the in-flight tasks waiting out a retry backoff
        self._backing_off: set[asyncio.Task[Any]] = set()
        self.reset_stats()

    # -- public API --------------------------------------------------------

    def reset_stats(self) -> None:
        self.batches_sent = 0
        self.events_sent = 0
        self.failures = 0
        self.dropped = 0
        # The receiver's answers, one per POST attempt (retries included), by HTTP status
        # class; `answers_none` counts attempts that got no HTTP answer (refused, timed out).
        self.answers = dict.fromkeys(ANSWER_CLASSES, 0)

    @property
    def pending(self) -> int:
        return len(self._buffer) + sum(self._inflight.values())

    @property
    def retrying(self) -> int:
        """Events (counted in ``pending`` too) waiting out a retry backoff."""
        return sum(self._inflight.get(task, 0) for task in self._backing_off)

    def stats(self) -> dict[str, int]:
        return {
            "batches_sent": self.batches_sent,
            "events_sent": self.events_sent,
            "failures": self.failures,
            "dropped": self.dropped,
            "pending": self.pending,
            "retrying": self.retrying,
            **self.answers,
        }

    def enqueue(self, event: Any) -> None:
        self._buffer.append(event)
        if len(self._buffer) >= self.max_batch:
            self._full.set()

    def start(self, session: aiohttp.ClientSession) -> None:
        if self._runner is not None:
            raise RuntimeError(f"{self.name} dispatcher already started")
        self._session = session
        self._runner = asyncio.create_task(self._run(), name=f"{self.name}-callbacks")
        self._runner.add_done_callback(self._runner_done)
        log.info(
            "%s callbacks -> %s (every %.0f ms, batch <= %d)",
            self.name,
            self.url,
            self.interval * 1000,
            self.max_batch,
        )

    async def stop(self) -> None:
        """Stop the loop and abandon buffered and in-flight events."""
        tasks = list(self._inflight)
        if self._runner is not None:
            tasks.append(self._runner)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._buffer:
            log.warning(
                "%s callbacks: %d undelivered event(s) discarded at shutdown", self.name, len(self._buffer)
            )
        self._buffer.clear()
        self._inflight.clear()
        self._runner = None

    def reset(self) -> None:
        """Drop buffered events, cancel in-flight/retrying batches and zero the stats."""
        self._buffer.clear()
        for task in list(self._inflight):
            task.cancel()
        self._inflight.clear()
        self._backing_off.clear()
        self._slots.clear()
        self.reset_stats()

    # -- internals ---------------------------------------------------------

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), timeout=self.interval)
            self._full.clear()
            # Every waiting event leaves the buffer now: its batch waits for a slot of its
            # own target only, so one unreachable receiver never holds up another's events.
            while self._buffer:
                try:
                    batch, url = self._next_batch()
                except Exception:  # one bad event must not stop the loop
                    log.exception("%s callbacks: cannot batch an event; dropped", self.name)
                    self._buffer.popleft()
                    self.dropped += 1
                    continue
                task = asyncio.create_task(self._deliver(batch, url))
                self._inflight[task] = len(batch)
                task.add_done_callback(self._delivery_done)

    def _runner_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s callbacks: dispatcher loop died: %r", self.name, task.exception())

    def _slot(self, url: str) -> asyncio.Semaphore:
        """The semaphore bounding concurrent POSTs to ``url``'s origin."""
        try:
            origin = str(URL(url).origin())
        except ValueError:
            origin = url
        slot = self._slots.get(origin)
        if slot is None:
            slot = self._slots[origin] = asyncio.Semaphore(self.max_inflight)
        return slot

    def _next_batch(self) -> tuple[list[Any], str]:
        if self.url_for is None:
            size = min(self.max_batch, len(self._buffer))
            return [self._buffer.popleft() for _ in range(size)], self.url
        batch: list[Any] = []
        url = ""
        while self._buffer and len(batch) < self.max_batch:
            event_url = self.url_for(self._buffer[0])
            if batch and event_url != url:
                break
            url = event_url
            batch.append(self._buffer.popleft())
        return batch, url

    def _delivery_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s callbacks: delivery task crashed: %r", self.name, task.exception())

    async def _attempt(self, url: str, body: bytes) -> tuple[int | None, str]:
        """One signed POST of ``body`` to ``url`` holding a slot of its origin: the
        answer's status (None: no answer) and a description for the logs."""
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        async with self._slot(url):
            try:
                headers = dict(self.static_headers)
                if self.signer is not None:
                    headers.update(self.signer.headers(url, body))
                async with self._session.post(url, data=body, headers=headers, timeout=timeout) as resp:
                    status = resp.status
                    await resp.read()
                return status, f"HTTP {status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            except Exception as exc:  # a bug in one send is retried like no answer
                log.exception("%s callbacks: sending to %s raised", self.name, URL(url).origin())
                return None, type(exc).__name__

    async def _deliver(self, batch: list[Any], url: str) -> None:
        try:
            body = self.encoder(batch)
        except Exception:  # never sendable: drop it, keep the dispatcher going
            log.exception("%s callbacks: cannot encode a batch of %d event(s); dropped",
                          self.name, len(batch))
            self.failures += 1
            self.dropped += len(batch)
            return
        delay = self.retry_base
        for attempt in range(1, self.max_attempts + 1):
            status, problem = await self._attempt(url, body)
            self.answers[answer_class(status)] += 1

            if status is not None and 200 <= status < 300:
                self.batches_sent += 1
                self.events_sent += len(batch)
                log.info(
                    "%s callbacks: batch of %d event(s) delivered (HTTP %d, attempt %d)",
                    self.name,
                    len(batch),
                    status,
                    attempt,
                )
                return

            self.failures += 1
            if status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX:
                self.dropped += len(batch)
                log.error(
                    "%s callbacks: batch of %d event(s) rejected with HTTP %d; dropped",
                    self.name,
                    len(batch),
                    status,
                )
                return
            if attempt == self.max_attempts:
                self.dropped += len(batch)
                log.error(
                    "%s callbacks: batch of %d event(s) failed %d times (%s); dropped",
                    self.name,
                    len(batch),
                    attempt,
                    problem,
                )
                return
            log.warning(
                "%s callbacks: batch of %d event(s) failed (%s), attempt %d/%d, retrying in %.1f s",
                self.name,
                len(batch),
                problem,
                attempt,
                self.max_attempts,
                delay,
            )
            task = asyncio.current_task()
            assert task is not None
            self._backing_off.add(task)
            try:
                await asyncio.sleep(delay)
            finally:
                self._backing_off.discard(task)
            delay = min(delay * 2, self.retry_cap)


class DelayedCalls:
    """``loop.call_later`` with bookkeeping, so pending calls can be counted and cancelled."""

    def __init__(self) -> None:
        self._handles: set[asyncio.TimerHandle] = set()

    def __len__(self) -> int:
        return len(self._handles)

    def call_later(self, delay: float, func: Callable[..., None], *args: Any) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._handles.discard(handle)
            func(*args)

        handle = loop.call_later(delay, fire)
        self._handles.add(handle)

    def cancel_all(self) -> None:
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
