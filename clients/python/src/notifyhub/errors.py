"""Typed errors. Every refusal by the API has one body, `{"error": {"code", "message",
"fields"}}`; an `APIError` carries all three, the HTTP status and the request id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class NotifyHubError(Exception):
    """Base class of everything this client raises."""


class APIConnectionError(NotifyHubError):
    """The API could not be reached (connection refused, reset, timed out), after retries."""


class WebhookVerificationError(NotifyHubError):
    """A webhook's signature, id or timestamp does not check out: do not trust its body."""


class APIError(NotifyHubError):
    """The API answered with an error status."""

    def __init__(self, *, status: int, code: str, message: str,
                 fields: Mapping[str, list[str]] | None = None, request_id: str | None = None,
                 retry_after: float | None = None, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields: dict[str, list[str]] = dict(fields or {})
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body


class BadRequestError(APIError):
    """400: invalid or malformed; `fields` names each problem (`recipients[2].email`)."""


class AuthenticationError(APIError):
    """401: no or bad API key."""


class PermissionDeniedError(APIError):
    """403: the key lacks the scope (`insufficient_scope`; `fields["scope"]` says which)."""


class NotFoundError(APIError):
    """404: unknown id, or another client's."""


class ConflictError(APIError):
    """409: in flight, already taken, or changed meanwhile."""


class UnprocessableError(APIError):
    """422: a business rule refused it (`unknown_template`, `missing_variables`, …)."""


class RateLimitError(APIError):
    """429: throttled or daily quota reached; `retry_after` is the server's Retry-After."""


class ServerError(APIError):
    """5xx: the API failed or a store is unreachable for a moment (503)."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError,
    404: NotFoundError, 409: ConflictError, 422: UnprocessableError, 429: RateLimitError,
}


def error_for(status: int, body: Any, *, request_id: str | None,
              retry_after: float | None) -> APIError:
    """The typed error for an error response (`body` is its parsed JSON, or its text)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or "error")
        message = str(error.get("message") or "")
        fields = error.get("fields") if isinstance(error.get("fields"), dict) else {}
    else:
        code, message, fields = f"http_{status}", str(body)[:500], {}
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    return cls(status=status, code=code, message=message, fields=fields, request_id=request_id,
               retry_after=retry_after, body=body)
