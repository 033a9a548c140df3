"""`Client` (sync) and `AsyncClient` (asyncio), both on httpx. They differ only in how they
run a RequestSpec: the retry loop, the sleep and the page-following iterator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Self

import httpx

from ._base import (
    USER_AGENT,
    NotifyHubObject,
    RequestSpec,
    RetryPolicy,
    clean_params,
    error_of,
    headers_for,
    idempotency_key_for,
    is_test_key,
    new_request_id,
    next_cursor,
    resolve_settings,
    result_of,
)
from ._resources import (
    Admin,
    Audit,
    Metrics,
    Notifications,
    Preferences,
    Recipients,
    Schedules,
    Segments,
    System,
    Templates,
    Webhooks,
)
from .errors import APIConnectionError

DEFAULT_TIMEOUT = 30.0


def _base_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT,
            "Accept": "application/json"}


def _with_cursor(spec: RequestSpec, cursor: str) -> RequestSpec:
    return RequestSpec(spec.method, spec.path, params={**(spec.params or {}), "cursor": cursor})


class _Options:
    def __init__(self, api_key: str | None, base_url: str | None,
                 retry: RetryPolicy | None, max_retries: int | None) -> None:
        self.api_key, self.base_url = resolve_settings(api_key, base_url)
        self.retry = retry or RetryPolicy()
        if max_retries is not None:
            self.retry.max_retries = max_retries


Sync = NotifyHubObject
SyncPages = Iterator[NotifyHubObject]
Async = Awaitable[NotifyHubObject]
AsyncPages = AsyncIterator[NotifyHubObject]


class Client:
    """The NotifyHub API, synchronously.

        client = Client(api_key="nh_…", base_url="https://notifyhub.example.com")
        notification = client.notifications.send(recipients=["user_1"], template_id="welcome")
        notification.id

    `api_key`/`base_url` default to NOTIFYHUB_API_KEY / NOTIFYHUB_BASE_URL. `http_client`:
    an httpx.Client of your own (proxies, a transport for tests). `sleep`: how to wait
    between retries (time.sleep)."""

    def __init__(self, api_key: str | None = None, *, base_url: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, max_retries: int | None = None,
                 retry: RetryPolicy | None = None, http_client: httpx.Client | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._options = _Options(api_key, base_url, retry, max_retries)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)
        self._sleep = sleep
        self.notifications: Notifications[Sync, SyncPages] = Notifications(self)
        self.templates: Templates[Sync, SyncPages] = Templates(self)
        self.preferences: Preferences[Sync, SyncPages] = Preferences(self)
        self.recipients: Recipients[Sync, SyncPages] = Recipients(self)
        self.schedules: Schedules[Sync, SyncPages] = Schedules(self)
        self.segments: Segments[Sync, SyncPages] = Segments(self)
        self.webhooks: Webhooks[Sync, SyncPages] = Webhooks(self)
        self.audit: Audit[Sync, SyncPages] = Audit(self)
        self.metrics: Metrics[Sync, SyncPages] = Metrics(self)
        self.admin: Admin[Sync, SyncPages] = Admin(self)
        self.system: System[Sync, SyncPages] = System(self)

    @property
    def test_mode(self) -> bool:
        """True with a test key (`nh_test_…`): sends reach only the provider sandbox."""
        return is_test_key(self._options.api_key)

    def call(self, spec: RequestSpec) -> NotifyHubObject:
        """Runs one operation with retries; the value, or a typed error."""
        options = self._options
        key = idempotency_key_for(spec)
        headers = {**_base_headers(options.api_key), **headers_for(spec, key, new_request_id())}
        attempt = 0
        while True:
            try:
                response = self._http.request(spec.method, options.base_url + spec.path,
                                              params=clean_params(spec.params), json=spec.json,
                                              headers=headers)
            except httpx.TransportError as exc:
                delay = options.retry.delay_after_connection_error(exc, attempt=attempt, spec=spec)
                if delay is None:
                    raise APIConnectionError(f"{spec.method} {spec.path}: {exc!r}") from exc
            else:
                if response.is_success:
                    return result_of(response)  # type: ignore[no-any-return]
                error = error_of(response)
                delay = options.retry.delay_after_error(error, attempt=attempt, spec=spec)
                if delay is None:
                    raise error
            self._sleep(delay)
            attempt += 1

    def paginate(self, spec: RequestSpec) -> Iterator[NotifyHubObject]:
        """Every item of every page, fetching the next page when the previous one is used up."""
        while True:
            page = self.call(spec)
            yield from page.get("results", [])
            cursor = next_cursor(page)
            if cursor is None:
                return
            spec = _with_cursor(spec, cursor)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncClient:
    """The NotifyHub API for asyncio: the same resources and methods as `Client`, each to be
    awaited; list methods return async iterators (`async for n in client.notifications.list()`)."""

    def __init__(self, api_key: str | None = None, *, base_url: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, max_retries: int | None = None,
                 retry: RetryPolicy | None = None, http_client: httpx.AsyncClient | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self._options = _Options(api_key, base_url, retry, max_retries)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._sleep = sleep
        self.notifications: Notifications[Async, AsyncPages] = Notifications(self)
        self.templates: Templates[Async, AsyncPages] = Templates(self)
        self.preferences: Preferences[Async, AsyncPages] = Preferences(self)
        self.recipients: Recipients[Async, AsyncPages] = Recipients(self)
        self.schedules: Schedules[Async, AsyncPages] = Schedules(self)
        self.segments: Segments[Async, AsyncPages] = Segments(self)
        self.webhooks: Webhooks[Async, AsyncPages] = Webhooks(self)
        self.audit: Audit[Async, AsyncPages] = Audit(self)
        self.metrics: Metrics[Async, AsyncPages] = Metrics(self)
        self.admin: Admin[Async, AsyncPages] = Admin(self)
        self.system: System[Async, AsyncPages] = System(self)

    @property
    def test_mode(self) -> bool:
        return is_test_key(self._options.api_key)

    async def call(self, spec: RequestSpec) -> NotifyHubObject:
        options = self._options
        key = idempotency_key_for(spec)
        headers = {**_base_headers(options.api_key), **headers_for(spec, key, new_request_id())}
        attempt = 0
        while True:
            try:
                response = await self._http.request(spec.method, options.base_url + spec.path,
                                                    params=clean_params(spec.params),
                                                    json=spec.json, headers=headers)
            except httpx.TransportError as exc:
                delay = options.retry.delay_after_connection_error(exc, attempt=attempt, spec=spec)
                if delay is None:
                    raise APIConnectionError(f"{spec.method} {spec.path}: {exc!r}") from exc
            else:
                if response.is_success:
                    return result_of(response)  # type: ignore[no-any-return]
                error = error_of(response)
                delay = options.retry.delay_after_error(error, attempt=attempt, spec=spec)
                if delay is None:
                    raise error
            await self._sleep(delay)
            attempt += 1

    async def paginate(self, spec: RequestSpec) -> AsyncIterator[NotifyHubObject]:
        while True:
            page = await self.call(spec)
            for item in page.get("results", []):
                yield item
            cursor = next_cursor(page)
            if cursor is None:
                return
            spec = _with_cursor(spec, cursor)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
