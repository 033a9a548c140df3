"""Staff accounts: users in each role, logged in through the real admin login form, and
TOTP codes computed from a device's key (django_otp.oath) — nothing about the check is
mocked."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client as HttpClient
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts.services import roles_sync

PASSWORD = "correct horse battery staple"
LOGIN = "/admin/login/"


def code(device: TOTPDevice, steps: int = 0) -> str:
    """The device's TOTP code now (or `steps` time steps later), as an authenticator app
    shows it. A device accepts each code once, and the codes of the step before and after."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps * device.step
    return f"{totp.token():0{device.digits}d}"


@pytest.fixture
def roles(db: None) -> None:
    roles_sync()


@pytest.fixture
def make_staff(roles: None) -> Callable[..., User]:
    def make(role: str | None = None, **fields: Any) -> User:
        fields.setdefault("is_staff", True)
        user = User.objects.create_user(f"staff-{uuid.uuid4().hex[:10]}", password=PASSWORD,
                                        email="someone@example.com", **fields)
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user
    return make


def login(http: HttpClient, user: User, token: str = "", password: str = PASSWORD) -> Any:
    """Logs in through the admin's login form, as a browser does."""
    return http.post(LOGIN, {"username": user.username, "password": password, "otp_token": token,
                             "next": "/admin/"})


@pytest.fixture
def logged_in(make_staff: Callable[..., User]) -> Callable[[str], HttpClient]:
    """A browser logged into the admin as a new user of `role`."""
    def make(role: str) -> HttpClient:
        http = HttpClient()
        response = login(http, make_staff(role))
        assert response.status_code == 302 and response["Location"] == "/admin/", response
        return http
    return make


def confirmed_device(user: User) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
