from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from .exceptions import error_body
from .logging import request_id_var

_VALID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Takes `X-Request-Id` from the caller (if sane) or makes one; echoes it on the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-Id", "")
        request_id = incoming if _VALID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-Id"] = request_id
        return response


class RejectNulCharactersMiddleware:
    """A NUL character in the path or the query string is answered 400 before any view runs.

    PostgreSQL text cannot hold one, so an id, key or filter carrying it can never match, and
    handing it to a query fails in the database driver (a 500). Bodies are checked by the
    serializers (DRF's CharField refuses NUL; apps.core.fields.no_nul for JSON values)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or any(
            "\x00" in key or any("\x00" in value for value in values)
            for key, values in request.GET.lists()
        ):
            message = "The URL contains a NUL character."
            if request.path.startswith("/api/"):
                return JsonResponse(error_body("invalid", message, {"url": [message]}), status=400)
            return HttpResponseBadRequest(message)
        return self.get_response(request)


# -- Browser-only middleware --------------------------------------------------------------------
# The JSON API under API_PREFIX authenticates every request with an API key (DRF): it never
# reads a session, a logged-in user or a flash message. The middleware below are Django's, doing
# nothing for those paths (no session store, no lazy user, no message storage per request);
# the admin and every other page get them unchanged. Subclasses, so Django's admin checks still
# find them.

API_PREFIX = "/api/v1/"


def is_api_request(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


class BrowserSessionMiddleware(SessionMiddleware):
    def process_request(self, request: HttpRequest) -> None:
        if not is_api_request(request):
            super().process_request(request)

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if not hasattr(request, "session"):
            return response
        return super().process_response(request, response)


class BrowserAuthenticationMiddleware(AuthenticationMiddleware):
    def process_request(self, request: HttpRequest) -> None:
        if not is_api_request(request):
            super().process_request(request)


class BrowserMessageMiddleware(MessageMiddleware):
    def process_request(self, request: HttpRequest) -> None:
        if not is_api_request(request):
            super().process_request(request)
