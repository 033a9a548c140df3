"""Who is acting, from where: the request context every audit row takes its actor from.

`AuditContextMiddleware` (middleware.py) puts the request in a contextvar; the actor is resolved when a row is
written (by then DRF has authenticated the API key and the admin has loaded `request.user`):

* an API request → `api_key` (the key's id and prefix, from `request.auth`);
* a logged-in user (the admin) → `user` (id and username);
* any other request (STOP texts, unsubscribe links, provider callbacks) → `inbound`;
* no request: a Celery task (`system`, named after the task, request id = task id), a
  management command (`audit_actor(...)`), or anything else → `system`.
"""

from __future__ import annotations

import contextvars
import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from apps.core.logging import request_id_var

from .models import ActorType

MAX_USER_AGENT = 512


@dataclass(frozen=True)
class Actor:
    type: str  # ActorType
    id: str = ""
    display: str = ""


SYSTEM = Actor(ActorType.SYSTEM, "", "system")


@dataclass(frozen=True)
class AuditContext:
    """What a row records besides the change itself."""

    actor: Actor
    ip: str | None = None
    user_agent: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class _Scope:
    request: HttpRequest | None = None
    actor: Actor | None = None  # fixed (tasks, commands); otherwise resolved from the request
    request_id: str = ""


_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("audit_scope", default=None)


@contextmanager
def request_scope(request: HttpRequest) -> Iterator[None]:
    """Rows written inside take their actor, IP, user agent and request id from `request`."""
    token = _scope.set(_Scope(request=request))
    try:
        yield
    finally:
        _scope.reset(token)


@contextmanager
def audit_actor(actor: Actor, *, request_id: str = "") -> Iterator[None]:
    """Rows written inside are by `actor` (management commands, scripts, tasks)."""
    token = _scope.set(_Scope(actor=actor, request_id=request_id))
    try:
        yield
    finally:
        _scope.reset(token)


def _request_actor(request: HttpRequest) -> Actor:
    from apps.clients.models import ApiKey

    auth = getattr(request, "auth", None)  # DRF copies request.auth onto the HttpRequest
    if isinstance(auth, ApiKey):
        return Actor(ActorType.API_KEY, str(auth.pk), auth.prefix)
    user: Any = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False) and hasattr(user, "get_username"):
        return Actor(ActorType.USER, str(user.pk), user.get_username())
    # Named by the route, never the path: some paths carry a credential (unsubscribe tokens).
    match = getattr(request, "resolver_match", None)
    return Actor(ActorType.INBOUND, "", (getattr(match, "url_name", None) or "inbound")[:200])


def _client_ip(request: HttpRequest) -> str | None:
    raw = request.META.get("REMOTE_ADDR") or ""
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None


def current_context() -> AuditContext:
    scope = _scope.get()
    if scope is None:
        return AuditContext(actor=SYSTEM)
    request = scope.request
    if request is None:
        return AuditContext(actor=scope.actor or SYSTEM, request_id=scope.request_id)
    request_id = getattr(request, "request_id", None) or request_id_var.get()
    return AuditContext(
        actor=scope.actor or _request_actor(request),
        ip=_client_ip(request),
        user_agent=request.headers.get("User-Agent", "")[:MAX_USER_AGENT],
        request_id="" if request_id == "-" else str(request_id)[:64],
    )


# -- Celery ---------------------------------------------------------------------------------

_task_tokens: dict[str, contextvars.Token[_Scope | None]] = {}


def _task_started(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    name = str(getattr(task, "name", "") or "task")
    _task_tokens[task_id or ""] = _scope.set(
        _Scope(actor=Actor(ActorType.SYSTEM, "", name[:200]), request_id=(task_id or "")[:64]))


def _task_finished(task_id: str | None = None, **_: Any) -> None:
    token = _task_tokens.pop(task_id or "", None)
    if token is not None:
        try:
            _scope.reset(token)
        except ValueError:  # set in another context (should not happen): just clear it
            _scope.set(None)


def connect_celery_signals() -> None:
    from celery.signals import task_postrun, task_prerun

    task_prerun.connect(_task_started, weak=False, dispatch_uid="audit_task_started")
    task_postrun.connect(_task_finished, weak=False, dispatch_uid="audit_task_finished")
