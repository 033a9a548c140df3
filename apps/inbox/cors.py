"""CORS for the inbox API (/api/v1/inbox/…) and its stream (docs/inbox.md "CORS").

Each client lists the browser origins its pages are served from
(`Client.inbox_allowed_origins`). The policy, in two steps because a preflight carries no
token:

1. A preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered for an origin that
   some active client allows (`origin_allowed_by_any`): methods GET/POST, headers
   Authorization, Content-Type, Last-Event-ID, cached 10 minutes. Any other origin gets a 204
   without CORS headers, which the browser treats as a refusal.
2. The real request is authenticated by its token; then its `Origin` (when a browser sent one)
   must be allowed by the token's own client (`origin_allowed(client_id, origin)`), else 403
   `origin_not_allowed` before anything changes (api/authentication.py). The answer carries
   `Access-Control-Allow-Origin: <origin>` (never `*`) and `Vary: Origin`.

A small middleware rather than django-cors-headers: the allowed origins are per tenant and the
real request's check needs the token's client, which that package has no hook for; its static
settings would add a dependency for the preflight alone.

The origin lists of all active clients are read once per INBOX_CORS_CACHE_SECONDS per process
(tenants are few), so neither check costs a query per request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from apps.clients.models import Client

from .origins import normalise_origin, normalised_origins

INBOX_PATH_PREFIX = "/api/v1/inbox/"
ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID"
EXPOSE_HEADERS = "X-Request-Id, Retry-After"
MAX_AGE_SECONDS = 600

_lock = threading.Lock()
_cache: tuple[float, dict[str, frozenset[str]]] | None = None  # (read at, origin → client ids)


def _origins_map() -> dict[str, frozenset[str]]:
    global _cache
    now = time.monotonic()
    with _lock:
        if _cache is not None and now - _cache[0] < float(settings.INBOX_CORS_CACHE_SECONDS):
            return _cache[1]
    by_origin: dict[str, set[str]] = {}
    rows = (Client.objects.filter(is_active=True).exclude(inbox_allowed_origins=[])
            .values_list("id", "inbox_allowed_origins"))
    for client_id, origins in rows:
        for origin in normalised_origins(origins):
            by_origin.setdefault(origin, set()).add(str(client_id))
    result = {o: frozenset(ids) for o, ids in by_origin.items()}
    with _lock:
        _cache = (now, result)
    return result


def clear_cache() -> None:
    """Forget the origin lists (a client's were changed; tests)."""
    global _cache
    with _lock:
        _cache = None


def origin_allowed(client_id: object, origin: str) -> bool:
    """Whether this client's pages may call the inbox API from `origin`."""
    normal = normalise_origin(origin or "")
    return bool(normal) and str(client_id) in _origins_map().get(normal, frozenset())


def origin_allowed_by_any(origin: str) -> bool:
    """Whether some active client allows `origin` (enough to answer a preflight)."""
    normal = normalise_origin(origin or "")
    return bool(normal) and normal in _origins_map()


def is_preflight(request: HttpRequest) -> bool:
    return (request.method == "OPTIONS" and "HTTP_ORIGIN" in request.META
            and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in request.META)


def preflight_headers(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": str(MAX_AGE_SECONDS), "Vary": "Origin"}


def response_headers(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": EXPOSE_HEADERS, "Vary": "Origin"}


class InboxCorsMiddleware:
    """Answers preflights to /api/v1/inbox/… and adds the CORS headers to the answers of real
    requests whose origin the token's client allows (the view records the client it
    authenticated on `request.inbox_client_id`)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(INBOX_PATH_PREFIX):
            return self.get_response(request)
        origin = request.META.get("HTTP_ORIGIN", "")
        if is_preflight(request):
            response = HttpResponse(status=204)
            response["Vary"] = "Origin"
            if origin_allowed_by_any(origin):
                for name, value in preflight_headers(origin).items():
                    response[name] = value
            return response
        response = self.get_response(request)
        client_id = getattr(request, "inbox_client_id", None)
        allowed = (origin_allowed(client_id, origin) if client_id
                   # An unauthenticated answer (expired token …) is readable by any origin
                   # some client allows, so a widget can tell it must fetch a new token.
                   else response.status_code == 401 and origin_allowed_by_any(origin))
        if origin and allowed:
            for name, value in response_headers(origin).items():
                response[name] = value
        else:
            response["Vary"] = "Origin"
        return response
