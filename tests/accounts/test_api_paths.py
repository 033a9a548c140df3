"""The JSON API (/api/v1/) skips sessions, the staff login and its second factor; the admin
keeps them. A staff session never authenticates the API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client as HttpClient

from apps.accounts.roles import SUPPORT

from .conftest import login

pytestmark = pytest.mark.django_db


def test_a_staff_session_does_not_authenticate_the_api(make_staff: Callable[..., User]) -> None:
    http = HttpClient()
    assert login(http, make_staff(SUPPORT)).status_code == 302
    assert http.get("/admin/audit/auditlog/").status_code == 200  # the session works there
    response = http.get("/api/v1/notifications")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_api_responses_carry_no_session_or_messages(api: Any) -> None:
    response = api.get("/api/v1/notifications")
    assert response.status_code == 200
    assert not response.cookies
    assert "Cookie" not in response.get("Vary", "")


def test_the_admin_still_requires_the_second_factor(settings: Any,
                                                    make_staff: Callable[..., User]) -> None:
    settings.ADMIN_REQUIRE_OTP = True
    http = HttpClient()
    login(http, make_staff(SUPPORT))
    response = http.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/two-factor/")
