"""JSON error pages for API paths (HTML stays for the admin)."""

from __future__ import annotations

import sys
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import bad_request as html_bad_request
from django.views.defaults import page_not_found
from django.views.defaults import permission_denied as html_permission_denied
from django.views.defaults import server_error as html_server_error

from .exceptions import (
    RETRY_AFTER_SECONDS,
    SERVICE_UNAVAILABLE_CODE,
    SERVICE_UNAVAILABLE_MESSAGE,
    error_body,
    is_database_unavailable,
    log_database_unavailable,
)


@csrf_exempt  # bearer keys, no cookies: a POST to an unknown API path is a JSON 404, not CSRF's HTML 403
def api_not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    return JsonResponse(error_body("not_found", "No such endpoint."), status=404)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return page_not_found(request, exception)  # type: ignore[arg-type]


def server_error(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """handler500. Django calls it while handling the exception, so `sys.exc_info()` is the
    error: a database that cannot be reached is a 503 with Retry-After on every path (plain
    Django views, the admin, middleware that reads the session), not a 500."""
    exc = sys.exc_info()[1]
    if is_database_unavailable(exc):
        assert exc is not None
        log_database_unavailable(exc, request.path)
        unavailable: HttpResponse
        if request.path.startswith("/api/"):
            unavailable = JsonResponse(
                error_body(SERVICE_UNAVAILABLE_CODE, SERVICE_UNAVAILABLE_MESSAGE), status=503)
        else:
            unavailable = HttpResponse(
                "<!doctype html><title>Service unavailable</title><h1>Service unavailable</h1>"
                "<p>The database cannot be reached right now. Try again in a few seconds.</p>",
                status=503)
        unavailable["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return unavailable
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("server_error", "Internal error; it has been logged."),
                            status=500)
    return html_server_error(request)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's own 400s (too many form fields, a suspicious Host …): JSON under /api/."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("malformed_request", "The request is malformed."),
                            status=400)
    return html_bad_request(request, exception)  # type: ignore[arg-type]


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("forbidden", "Forbidden."), status=403)
    return html_permission_denied(request, exception)  # type: ignore[arg-type]
