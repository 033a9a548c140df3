"""Shared context and the base class of the provider emulators (SendGrid, Twilio, FCM, SMTP,
Vonage): one `*Emulator` subclass per impersonated provider."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from .callbacks import CallbackDispatcher, DelayedCalls
from .config import SandboxConfig
from .store import ControlBoard, ControlState, MessageStore, RequestStats

# Every provider the sandbox impersonates (control scopes, stats by_provider).
PROVIDER_NAMES = ("sendgrid", "twilio", "fcm", "smtp", "vonage")


@dataclass
class SandboxContext:
    config: SandboxConfig
    store: MessageStore = field(default_factory=MessageStore)
    stats: RequestStats = field(default_factory=lambda: RequestStats(PROVIDER_NAMES))
    control: ControlBoard = field(default_factory=lambda: ControlBoard(PROVIDER_NAMES))


def client_gone(request: web.Request) -> bool:
    """True if the client's connection is closed (aiohttp does not cancel handlers)."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def wait_unless_gone(request: web.Request, seconds: float, poll: float = 0.05) -> None:
    """Sleep ``seconds``, or less if the client disconnects meanwhile (checked every ``poll``
    seconds): a client that gave up is noticed however long the injected latency."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not client_gone(request):
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        await asyncio.sleep(min(remaining, poll))


def basic_auth_matches(request: web.Request, user: str, password: str) -> bool:
    """The request's HTTP Basic credentials are `user`:`password` (compared in constant time)."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given_user, _, given = base64.b64decode(encoded.strip()).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return (hmac.compare_digest(given_user.encode(), user.encode())
            and hmac.compare_digest(given.encode(), password.encode()))


class Emulator:
    """Base class: one `*Emulator` subclass per impersonated provider."""

    name: str = "provider"

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self.dispatchers: list[CallbackDispatcher] = []
        self.delayed = DelayedCalls()
        self.log = logging.getLogger(f"sandbox.{self.name}")

    # -- hooks for subclasses ---------------------------------------------

    def setup(self, app: web.Application) -> None:
        """Register routes on ``app``."""
        raise NotImplementedError

    def error_response(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        """An error response in the provider's own body format."""
        return web.json_response({"message": message}, status=status, headers=headers)

    def injected_failure(self, status: int, retry_after: int) -> web.Response:
        headers = {"Retry-After": str(retry_after)} if status == 429 else None
        return self.error_response(status, f"sandbox injected failure ({status})", headers=headers)

    def timeout_response(self) -> web.Response:
        """Answer to a request held for the whole ``timeout`` period."""
        return self.error_response(504, "Gateway Timeout")

    async def start(self, session: aiohttp.ClientSession) -> None:
        """Called once the app runs (same event loop): starts the callback dispatchers."""
        for dispatcher in self.dispatchers:
            dispatcher.start(session)

    async def stop(self) -> None:
        self.delayed.cancel_all()
        for dispatcher in self.dispatchers:
            await dispatcher.stop()

    def extra_stats(self) -> dict[str, Any]:
        """Provider-specific counters added to ``by_provider[name]`` in /sandbox/stats."""
        return {}

    # -- shared machinery --------------------------------------------------

    def reset(self) -> None:
        self.delayed.cancel_all()
        for dispatcher in self.dispatchers:
            dispatcher.reset()

    @property
    def pending_events(self) -> int:
        """Events scheduled but not yet due (dispatcher buffers are counted separately)."""
        return len(self.delayed)

    async def handle_provider_request(
        self,
        request: web.Request,
        accept: Callable[[web.Request, bytes], web.Response],
    ) -> web.Response:
        """Common path for provider API calls: stats, down/timeout, latency, disconnect
        check, injected failures -- with this provider's effective control values.

        ``accept`` is synchronous on purpose: nothing can interleave between the
        disconnect check and the message being stored.
        """
        ctx = self.ctx
        ctx.stats.record_request(self.name)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._finish(self.error_response(413, "Payload too large."))
        except (ConnectionError, asyncio.IncompleteReadError):
            return self._aborted("while reading the body")

        control = ctx.control.effective(self.name)
        while control.down or control.timeout:
            if control.down:
                return self._reset_connection(request)
            self.log.info("%s holding a request (timeout mode)", self.name)
            released = await ctx.control.hold(ctx.config.timeout_hold_s, gone=lambda: client_gone(request))
            if client_gone(request):
                return self._aborted("while held in timeout mode")
            if not released:
                return self._finish(self.timeout_response())
            control = ctx.control.effective(self.name)

        latency_ms = control.latency_ms
        if latency_ms > 0:
            await wait_unless_gone(request, latency_ms / 1000.0)
        if client_gone(request):
            return self._aborted(f"after {latency_ms} ms latency")

        if ctx.control.take_failure(self.name):
            status = control.fail_status
            self.log.info("%s injected failure HTTP %d", self.name, status)
            return self._finish(self.injected_failure(status, control.retry_after))

        return self._finish(accept(request, body))

    def control_state(self) -> ControlState:
        return self.ctx.control.effective(self.name)

    def _finish(self, response: web.Response) -> web.Response:
        self.ctx.stats.record_response(response.status, self.name)
        return response

    def _aborted(self, when: str) -> web.Response:
        self.ctx.stats.record_aborted(self.name)
        self.log.warning("%s request aborted: client disconnected %s; nothing stored", self.name, when)
        # Nobody will read this; status 499 mirrors nginx's "client closed request".
        return web.Response(status=499)

    def _reset_connection(self, request: web.Request) -> web.Response:
        """``down``: drop the connection with a TCP RST (clients see ECONNRESET)."""
        self.ctx.stats.record_reset(self.name)
        self.log.info("%s is down: resetting the connection", self.name)
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # linger on, timeout 0: close() sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        return web.Response(status=499)  # never written: the connection is gone
