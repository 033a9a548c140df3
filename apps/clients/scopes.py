"""API key scopes: every API view declares what each of its methods needs.

    class NotificationCollectionApi(ListAPIView):
        required_scopes = {"GET": Scope.READ, "POST": Scope.SEND}

A value is one scope or a tuple of scopes any of which will do. `HasScope` (a DRF default
permission, after `IsClient`) reads the declaration: a key without the scope gets 403
`insufficient_scope` naming it; a view that implements a method without declaring it refuses
every key (a new view is closed until someone decides its scope). HEAD follows GET; OPTIONS
needs no scope. tests/clients/test_scopes.py walks every /api/v1/ URL to check declarations.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from rest_framework import exceptions, permissions, status
from rest_framework.request import Request

from apps.core.exceptions import ApplicationError

from .models import ApiKey, Scope

logger = logging.getLogger(__name__)

ScopeRule = Scope | tuple[Scope, ...]
ScopeMap = Mapping[str, ScopeRule]


class _ScopeError(ApplicationError, exceptions.PermissionDenied):
    """Rendered in the project's error shape (ApplicationError); a DRF PermissionDenied too, so
    DRF's own permission probes (OPTIONS metadata) treat it as a refusal."""

    status_code: int = status.HTTP_403_FORBIDDEN
    code = "insufficient_scope"


class InsufficientScope(_ScopeError):

    def __init__(self, needed: tuple[str, ...], method: str, path: str) -> None:
        wanted = " or ".join(f"'{s}'" for s in needed)
        super().__init__(
            f"This API key lacks the {wanted} scope needed for {method} {path}.",
            fields={"scope": list(needed)},
        )
        # RFC 6750 §3.1: which scope would do.
        self.www_authenticate = f'Bearer error="insufficient_scope", scope="{" ".join(needed)}"'


class ScopeNotDeclared(_ScopeError):
    pass


def declared_scopes(view: Any, method: str) -> tuple[Scope, ...] | None:
    """The scopes (any of) the view declares for `method`; () for none needed (OPTIONS);
    None when it declares nothing for a method it implements."""
    method = method.upper()
    if method == "OPTIONS":
        return ()
    declared: ScopeMap = getattr(view, "required_scopes", None) or {}
    rule = declared.get(method) or (declared.get("GET") if method == "HEAD" else None)
    if rule is None:
        return None
    return rule if isinstance(rule, tuple) else (rule,)


def implemented_methods(view_class: type) -> set[str]:
    return {m.upper() for m in getattr(view_class, "http_method_names", [])
            if m not in ("options", "head", "trace") and hasattr(view_class, m)}


class HasScope(permissions.BasePermission):
    """The request's API key holds a scope the view declares for this method."""

    def has_permission(self, request: Request, view: Any) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return False  # IsClient answers 401 first; never reached with a key
        method = str(request.method)
        if method.lower() not in view.http_method_names or getattr(view, method.lower(), None) is None:
            return True  # not implemented: the view answers 405
        needed = declared_scopes(view, method)
        if needed is None:
            logger.error("%s declares no scope for %s: refused", type(view).__name__, method)
            raise ScopeNotDeclared(f"{method} {request.path} is not open to API keys yet.",
                                   fields={"scope": []})
        if not needed or any(key.has_scope(s) for s in needed):
            return True
        raise InsufficientScope(tuple(str(s) for s in needed), method, request.path)
