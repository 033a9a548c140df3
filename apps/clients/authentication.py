"""API-key authentication for DRF: `Authorization: Bearer <key>`."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from apps.core.logging import log_context_bind

from .models import ApiKey, Client
from .selectors import api_key_authenticate


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Client, ApiKey] | None:
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not raw.strip():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <api key>'.")
        key = api_key_authenticate(raw_key=raw.strip())
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        log_context_bind(client=key.client.slug)  # on every line of this request
        return key.client, key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def request_client(request: Request) -> Client:
    """The client (tenant) an authenticated API request acts for."""
    user: Any = request.user
    if not isinstance(user, Client):
        raise exceptions.NotAuthenticated()
    return user


def request_api_key(request: Request) -> ApiKey:
    """The API key an authenticated API request came with."""
    key = request.auth
    if not isinstance(key, ApiKey):
        raise exceptions.NotAuthenticated()
    return key


def request_is_test(request: Request) -> bool:
    """Whether the request came with a test key: what it creates is marked test (sandbox
    only), and it reads only test notifications."""
    return request_api_key(request).is_test


class IsClient(permissions.BasePermission):
    """The request carries a valid API key (request.user is the Client)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, Client)
