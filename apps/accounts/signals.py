"""Django's auth signals → `staff.login`, `staff.logout`, `staff.login_failed` audit rows.
Handlers only call services (services.py)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

from .services import audit_staff_login, audit_staff_login_failed, audit_staff_logout


def _logged_in(sender: Any, request: Any, user: Any, **_: Any) -> None:
    audit_staff_login(user=user)


def _logged_out(sender: Any, request: Any, user: Any, **_: Any) -> None:
    audit_staff_logout(user=user)


def _login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **_: Any) -> None:
    model = get_user_model()
    username = str(credentials.get(model.USERNAME_FIELD) or credentials.get("username") or "")
    user = model._default_manager.filter(**{model.USERNAME_FIELD: username}).first() if username else None
    audit_staff_login_failed(username=username, reason="bad_credentials", user=user)


def connect() -> None:
    user_logged_in.connect(_logged_in, dispatch_uid="accounts_staff_login")
    user_logged_out.connect(_logged_out, dispatch_uid="accounts_staff_logout")
    user_login_failed.connect(_login_failed, dispatch_uid="accounts_staff_login_failed")
