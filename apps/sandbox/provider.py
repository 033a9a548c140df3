"""Shared context and base class for provider impersonations (SendGrid, later Twilio, FCM)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from .callbacks import CallbackDispatcher, DelayedCalls
from .config import SandboxConfig
from .store import ControlState, MessageStore, RequestStats


@dataclass
class SandboxContext:
    config: SandboxConfig
    store: MessageStore = field(default_factory=MessageStore)
    stats: RequestStats = field(default_factory=RequestStats)
    control: ControlState = field(default_factory=ControlState)


def client_gone(request: web.Request) -> bool:
    """True if the client's connection is closed (aiohttp does not cancel handlers)."""
    transport = request.transport
    return transport is None or transport.is_closing()


class Provider:
    """Base class: one subclass per impersonated provider."""

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
        """Common path for provider API calls: stats, latency, disconnect check, failures.

        ``accept`` is synchronous on purpose: nothing can interleave between the
        disconnect check and the message being stored.
        """
        ctx = self.ctx
        ctx.stats.record_request()
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._finish(self.error_response(413, "Payload too large."))
        except (ConnectionError, asyncio.IncompleteReadError):
            return self._aborted("while reading the body")

        latency_ms = ctx.control.latency_ms
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000.0)
        if client_gone(request):
            return self._aborted(f"after {latency_ms} ms latency")

        if ctx.control.take_failure():
            status = ctx.control.fail_status
            self.log.info("%s injected failure HTTP %d", self.name, status)
            return self._finish(self.injected_failure(status, ctx.control.retry_after))

        return self._finish(accept(request, body))

    def _finish(self, response: web.Response) -> web.Response:
        self.ctx.stats.record_response(response.status)
        return response

    def _aborted(self, when: str) -> web.Response:
        self.ctx.stats.record_aborted()
        self.log.warning("%s request aborted: client disconnected %s; nothing stored", self.name, when)
        # Nobody will read this; status 499 mirrors nginx's "client closed request".
        return web.Response(status=499)
