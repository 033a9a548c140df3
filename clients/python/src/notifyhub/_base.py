"""What the sync and the async client share: the request an operation makes, the retry
policy, and turning a response into a value or a typed error. No I/O here."""

from __future__ import annotations

import email.utils
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx

from .errors import APIError, error_for

__version__ = "0.1.0"
USER_AGENT = f"notifyhub-python/{__version__}"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
TEST_KEY_PREFIX = "nh_test_"

F = TypeVar("F", bound=Callable[..., Any])


def operation(method: str, path: str, *, idempotent: bool = False) -> Callable[[F], F]:
    """Marks a client method as the one for an API operation (`POST /api/v1/notifications`).
    `idempotent`: the operation honours `Idempotency-Key`, so the client sends one and may
    retry the POST after a failure. The contract test matches these with the OpenAPI schema."""

    def mark(func: F) -> F:
        func.__notifyhub_operation__ = (method.upper(), path, idempotent)  # type: ignore[attr-defined]
        return func

    return mark


class NotifyHubObject(dict[str, Any]):
    """A JSON object from the API: a dict whose keys also read as attributes
    (`notification.id` is `notification["id"]`); nested objects are NotifyHubObjects too."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def to_object(value: Any) -> Any:
    if isinstance(value, dict):
        return NotifyHubObject({k: to_object(v) for k, v in value.items()})
    if isinstance(value, list):
        return [to_object(v) for v in value]
    return value


def is_test_key(api_key: str) -> bool:
    """A test-mode key (`nh_test_…`): it sends only to the provider sandbox and sees only test
    notifications (docs/api.md, "Test keys")."""
    return api_key.startswith(TEST_KEY_PREFIX)


@dataclass(frozen=True)
class RequestSpec:
    """One API call as an operation method describes it."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    idempotent: bool = False  # honours Idempotency-Key
    idempotency_key: str | None = None  # the caller's own, else one is generated


def clean_params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Query parameters without the ones left out (None); booleans as the API reads them."""
    if not params:
        return None
    cleaned: dict[str, Any] = {}
    for name, value in params.items():
        if value is None:
            continue
        cleaned[name] = ("true" if value else "false") if isinstance(value, bool) else value
    return cleaned or None


def next_cursor(page: Mapping[str, Any]) -> str | None:
    """The `cursor` of a page's `next` link; None on the last page."""
    link = page.get("next")
    if not link:
        return None
    values = parse_qs(urlsplit(str(link)).query).get("cursor")
    return values[0] if values else None


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Safe to send twice whatever happened to the first one.
SAFE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass
class RetryPolicy:
    """Retries with exponential backoff and jitter, honouring `Retry-After`.

    Retried: 429 and 503 (the request was refused before it did anything), other 5xx and
    connection errors when the request is safe to repeat (a GET/PUT/DELETE, or a POST with an
    Idempotency-Key, which the retry reuses), and 409 `idempotency_key_in_flight` (the first
    attempt is still running). A Retry-After longer than `max_retry_after` (a daily quota
    resets at midnight) is not waited for: the error is raised with `retry_after` set."""

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    max_retry_after: float = 60.0
    jitter: Callable[[], float] = field(default=random.random, repr=False)

    def backoff(self, attempt: int) -> float:
        """Attempt 0 → ~0.5 s, 1 → ~1 s, 2 → ~2 s … capped; each between half and all of it."""
        ceiling: float = min(self.backoff_max, self.backoff_base * 2.0 ** attempt)
        return ceiling * (0.5 + self.jitter() / 2)

    def delay_after_error(self, error: APIError, *, attempt: int, spec: RequestSpec) -> float | None:
        """Seconds to wait before retrying after `error`; None: do not retry."""
        if attempt >= self.max_retries:
            return None
        repeatable = spec.method in SAFE_METHODS or spec.idempotent
        if error.status == 409:
            retry = error.code == "idempotency_key_in_flight"
        elif error.status in (429, 503):
            retry = True
        else:
            retry = error.status in RETRY_STATUSES and repeatable
        if not retry:
            return None
        if error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.max_retry_after else None
        return self.backoff(attempt)

    def delay_after_connection_error(self, exc: httpx.TransportError, *, attempt: int,
                                     spec: RequestSpec) -> float | None:
        if attempt >= self.max_retries:
            return None
        repeatable = spec.method in SAFE_METHODS or spec.idempotent
        # Never connected: the server saw nothing, so any request may go again.
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) or repeatable:
            return self.backoff(attempt)
        return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` in seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def resolve_settings(api_key: str | None, base_url: str | None) -> tuple[str, str]:
    key = api_key or os.environ.get("NOTIFYHUB_API_KEY", "")
    if not key:
        raise ValueError("An API key is needed: Client(api_key=…) or NOTIFYHUB_API_KEY.")
    url = (base_url or os.environ.get("NOTIFYHUB_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    return key, url


def headers_for(spec: RequestSpec, idempotency_key: str | None, request_id: str) -> dict[str, str]:
    headers = {"X-Request-Id": request_id}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def idempotency_key_for(spec: RequestSpec) -> str | None:
    """The key this call sends on every attempt: the caller's own, or a new UUID for an
    operation that honours one; None for the others."""
    if spec.idempotency_key:
        return spec.idempotency_key
    return str(uuid.uuid4()) if spec.idempotent else None


def new_request_id() -> str:
    return uuid.uuid4().hex


def result_of(response: httpx.Response) -> Any:
    """The value of a successful response: its JSON as NotifyHubObjects; {} for no body."""
    if response.status_code == 204 or not response.content:
        return NotifyHubObject()
    try:
        return to_object(response.json())
    except ValueError:
        return NotifyHubObject({"text": response.text})


def error_of(response: httpx.Response) -> APIError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return error_for(response.status_code, body, request_id=response.headers.get("X-Request-Id"),
                     retry_after=parse_retry_after(response.headers.get("Retry-After")))
