"""Recipient-token authentication for the inbox API (docs/inbox.md "Tokens").

`Authorization: Bearer <token>` or `?token=<token>` (EventSource cannot set headers). The
principal is the token's recipient (`tokens.InboxPrincipal`): no API key works here and no
token works anywhere else. A browser request's `Origin` must be one the token's client allows
(cors.py), checked before the view runs, so a refused origin changes nothing."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, status
from rest_framework.request import Request

from apps.core.exceptions import ApplicationError
from apps.core.logging import log_context_bind

from ..cors import origin_allowed
from ..tokens import InboxPrincipal, InvalidInboxToken, read_inbox_token


class InboxAuthenticationFailed(ApplicationError, exceptions.AuthenticationFailed):
    """401 in the project's error shape, with the token's own code (`token_expired` …)."""

    status_code: int = status.HTTP_401_UNAUTHORIZED
    code = "invalid_token"


class OriginNotAllowed(ApplicationError, exceptions.PermissionDenied):
    status_code: int = status.HTTP_403_FORBIDDEN
    code = "origin_not_allowed"


def token_from(request: Request) -> str:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise InboxAuthenticationFailed("Use 'Authorization: Bearer <recipient token>'.")
        return raw.strip()
    return str(request.query_params.get("token", "")).strip()


class InboxTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[InboxPrincipal, str] | None:
        token = token_from(request)
        if not token:
            return None
        try:
            principal = read_inbox_token(token)
        except InvalidInboxToken as exc:
            raise InboxAuthenticationFailed(str(exc), code=exc.code) from exc
        origin = request.headers.get("Origin", "")
        if origin and not origin_allowed(principal.client_id, origin):
            raise OriginNotAllowed(f"The origin {origin} is not allowed for this client's inbox "
                                   "(Client.inbox_allowed_origins).")
        # For the CORS middleware's answer (the Django request under DRF's).
        request._request.inbox_client_id = principal.client_id  # type: ignore[attr-defined]
        log_context_bind(client=principal.client_id)
        return principal, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="inbox"'


class IsInboxRecipient(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.user, InboxPrincipal):
            raise InboxAuthenticationFailed("A recipient token is required "
                                            "(Authorization: Bearer, or ?token=).",
                                            code="not_authenticated")
        return True


def request_principal(request: Request) -> InboxPrincipal:
    user: Any = request.user
    if not isinstance(user, InboxPrincipal):
        raise InboxAuthenticationFailed("A recipient token is required.", code="not_authenticated")
    return user


class InboxTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "apps.inbox.api.authentication.InboxTokenAuthentication"
    name = "RecipientToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A recipient token (`POST /api/v1/recipients/{id}/inbox-token`, or "
                           "minted offline with the client's inbox signing secret): "
                           "`Authorization: Bearer <token>`, or `?token=` where headers cannot "
                           "be set (EventSource). It grants one recipient's inbox only.",
        }
