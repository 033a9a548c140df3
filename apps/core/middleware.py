from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from .exceptions import error_body
from .logging import log_context_var, request_id_var
from .parsers import JSONInputError, loads, printable_key

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
        context_token = log_context_var.set({})  # ids bound during this request only
        try:
            response = self.get_response(request)
        finally:
            log_context_var.reset(context_token)
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


class RequestBodyGuardMiddleware:
    """Request bodies no view should see, refused in the API's error format on every path:

    * a `Content-Length` above DATA_UPLOAD_MAX_MEMORY_SIZE → 413 `request_too_large`, before
      anything reads the body (DRF's parsers read the stream without Django's limit);
    * every JSON body (DRF views and the provider callbacks alike) parsed once and checked
      (apps.core.parsers: UTF-8, depth, NUL and lone surrogates) → 400 before the view runs;
      DRF views get the parsed value through GuardedJSONParser;
    * a NUL in a form-encoded body under /api/ (Twilio's callbacks) → 400.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            return _too_large()
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func: Callable[..., Any],
                     view_args: Any, view_kwargs: Any) -> HttpResponse | None:
        if request.method not in ("POST", "PUT", "PATCH", "DELETE"):
            return None
        content_type = request.content_type or ""
        if content_type == "application/json" or content_type.endswith("+json"):
            # Every view's JSON body, even one the view ignores: a request refused here has
            # written nothing. DRF views reuse the parsed value (GuardedJSONParser).
            try:
                body = request.body
            except RequestDataTooBig:
                return _too_large()
            if not body:
                return None
            try:
                parsed = loads(body)  # UTF-8 whatever the charset says (RFC 8259 §8.1)
            except JSONInputError as exc:
                return JsonResponse(error_body(exc.code, exc.message, exc.fields),
                                    status=exc.status_code)
            request.guarded_json = parsed  # type: ignore[attr-defined]
        elif content_type == "application/x-www-form-urlencoded" and request.path.startswith("/api/"):
            try:  # the provider callbacks that post forms (Twilio)
                form = request.POST
            except RequestDataTooBig:
                return _too_large()
            for key, values in form.lists():
                if "\x00" in key or any("\x00" in value for value in values):
                    message = "NUL characters (\\u0000) are not allowed."
                    return JsonResponse(error_body(
                        "invalid", f"A form field is not allowed: {message}",
                        {printable_key(key): [message]}), status=400)
        return None


def _too_large() -> JsonResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return JsonResponse(error_body("request_too_large",
                                   f"The request body is larger than {limit} bytes."), status=413)
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
