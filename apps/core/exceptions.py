"""Error types and the API's one error format.

Every error a client sees is `{"error": {"code", "message", "fields"}}` (API.md).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, InterfaceError, OperationalError
from django.http import Http404
from psycopg import errors as pg_errors
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """A business rule the request broke (valid JSON, wrong for the domain): 422 by default."""

    status_code: int = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "unprocessable"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: dict[str, list[str]] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code
        self.fields = fields or {}


class NotFound(ApplicationError):
    status_code: int = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Conflict(ApplicationError):
    status_code: int = status.HTTP_409_CONFLICT
    code = "conflict"


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


# A request that needs PostgreSQL while it cannot be reached (down, restarting, a connection
# cut, a lock or statement that gave up) is answered 503 with this Retry-After: the client
# retries, nothing was stored. Provider callbacks answer the same (apps/webhooks/inbound).
RETRY_AFTER_SECONDS = 5
SERVICE_UNAVAILABLE_CODE = "service_unavailable"
SERVICE_UNAVAILABLE_MESSAGE = (
    "The service cannot reach its database right now; nothing was stored. Retry later.")
DATABASE_ERRORS = (OperationalError, InterfaceError)


def is_database_unavailable(exc: BaseException | None) -> bool:
    return isinstance(exc, DATABASE_ERRORS)


def log_database_unavailable(exc: BaseException, where: str) -> None:
    # The class name only: a driver message can quote the statement's parameters.
    logger.warning("database unavailable (%s: %s), answering 503", where,
                   type(exc.__cause__ or exc).__name__)


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested ValidationError detail → {"recipients[2].email": ["..."]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):  # ListField child errors come keyed by index
                out.update(_flatten(value, f"{prefix}[{key}]"))
                continue
            name = str(key) if key != "non_field_errors" else ""
            path = f"{prefix}.{name}" if prefix and name else (prefix or name)
            out.update(_flatten(value, path))
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            if detail:
                out.setdefault(prefix or "non_field_errors", []).extend(str(d) for d in detail)
        else:
            for index, item in enumerate(detail):
                if item:
                    out.update(_flatten(item, f"{prefix}[{index}]"))
    else:
        out.setdefault(prefix or "non_field_errors", []).append(str(detail))
    return out


_CODES = {
    drf_exceptions.ParseError: "malformed_request",
    drf_exceptions.AuthenticationFailed: "unauthenticated",
    drf_exceptions.NotAuthenticated: "unauthenticated",
    drf_exceptions.PermissionDenied: "forbidden",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.Throttled: "throttled",
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if is_database_unavailable(exc):
        from rest_framework.views import set_rollback

        set_rollback()
        request = context.get("request")
        log_database_unavailable(exc, getattr(request, "path", "api"))
        unavailable = Response(error_body(SERVICE_UNAVAILABLE_CODE, SERVICE_UNAVAILABLE_MESSAGE),
                               status=status.HTTP_503_SERVICE_UNAVAILABLE)
        unavailable["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return unavailable
    if isinstance(exc, ApplicationError):
        refusal = Response(error_body(exc.code, exc.message, exc.fields), status=exc.status_code)
        challenge = getattr(exc, "www_authenticate", None)  # 403 insufficient_scope
        if challenge:
            refusal["WWW-Authenticate"] = challenge
        return refusal
    if isinstance(exc, IntegrityError) and isinstance(exc.__cause__, pg_errors.ForeignKeyViolation):
        # A row the request refers to was deleted while it ran (a recipient erased during a
        # send, a template deleted): its transaction rolled back, so nothing was saved.
        logger.warning("request refused: a referenced row was deleted meanwhile (%s)",
                       type(exc.__cause__).__name__)
        return Response(error_body(
            "conflict", "Something this request refers to was removed while it ran (for "
            "example the recipient was erased); nothing was saved. Retry the request."),
            status=status.HTTP_409_CONFLICT)
    if (isinstance(exc, IntegrityError) and isinstance(exc.__cause__, pg_errors.UniqueViolation)
            and "idempotency_key" in str(getattr(exc.__cause__.diag, "constraint_name", ""))):
        # Two sends with one Idempotency-Key committed at the same moment (the API serializes
        # them; this is the constraint behind it): the second wrote nothing.
        return Response(error_body(
            "idempotency_key_in_flight",
            "A request with this Idempotency-Key is still in progress; retry later.",
            {"Idempotency-Key": ["In flight."]}), status=status.HTTP_409_CONFLICT)
    # Imported here: rest_framework.views resolves the default permission classes on import,
    # and those (apps.clients.scopes) raise this module's errors.
    from rest_framework.views import exception_handler

    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf_exceptions.ValidationError):
        response.data = error_body(
            "invalid", "The request has invalid fields.", _flatten(exc.detail)
        )
        response.status_code = status.HTTP_400_BAD_REQUEST
        return response
    code = next((c for t, c in _CODES.items() if isinstance(exc, t)), "error")
    detail = getattr(exc, "detail", str(exc))
    response.data = error_body(code, str(detail))
    if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
        response.status_code = status.HTTP_401_UNAUTHORIZED
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response
