"""The optional TOTP second factor: login asks for the code when the account has a confirmed
device; staff enrol themselves from the admin; ADMIN_REQUIRE_OTP makes it mandatory. Codes
are computed from the device's key, as an authenticator app does."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client as HttpClient
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts.roles import SUPPORT
from apps.audit.models import AuditLog

from .conftest import code, confirmed_device, login

pytestmark = pytest.mark.django_db

ENROL = "/admin/two-factor/"


def audit(user: User, action: str) -> list[AuditLog]:
    return list(AuditLog.objects.filter(object_type="user", object_id=str(user.pk), action=action)
                .order_by("id"))


def test_without_a_device_the_password_is_enough(make_staff: Callable[..., User]) -> None:
    http, user = HttpClient(), make_staff(SUPPORT)
    assert login(http, user).status_code == 302
    assert http.get("/admin/audit/auditlog/").status_code == 200
    [row] = audit(user, "staff.login")
    assert row.changes == {"otp": False} and row.actor_display == user.username


def test_a_device_makes_the_code_required_at_login(make_staff: Callable[..., User]) -> None:
    http, user = HttpClient(), make_staff(SUPPORT)
    device = confirmed_device(user)

    response = login(http, user)
    assert response.status_code == 200
    assert "Enter the code from your authenticator app" in response.content.decode()
    assert http.get("/admin/").status_code == 302  # not logged in
    assert login(http, user, token=code(device)).status_code == 302
    assert http.get("/admin/audit/auditlog/").status_code == 200
    assert [r.changes["reason"] for r in audit(user, "staff.login_failed")] == ["otp_required"]
    assert audit(user, "staff.login")[-1].changes == {"otp": True}


def test_a_wrong_code_is_refused_and_throttles_the_device(make_staff: Callable[..., User]) -> None:
    http, user = HttpClient(), make_staff(SUPPORT)
    device = confirmed_device(user)

    response = login(http, user, token=code(device, steps=-5))  # long expired
    assert "That two-factor code is not valid" in response.content.decode()
    assert http.get("/admin/").status_code == 302
    # Right after a wrong code, even the right one waits (1 s, doubling per failure).
    assert login(http, user, token=code(device)).status_code == 200
    assert [r.changes["reason"] for r in audit(user, "staff.login_failed")] == ["otp_invalid"] * 2
    assert not audit(user, "staff.login")


def test_a_code_works_once(make_staff: Callable[..., User]) -> None:
    user = make_staff(SUPPORT)
    device = confirmed_device(user)
    token = code(device)
    assert login(HttpClient(), user, token=token).status_code == 302
    assert login(HttpClient(), user, token=token).status_code == 200  # replayed: refused


def test_a_wrong_password_with_a_right_code_is_refused(make_staff: Callable[..., User]) -> None:
    http, user = HttpClient(), make_staff(SUPPORT)
    device = confirmed_device(user)
    assert login(http, user, token=code(device), password="wrong").status_code == 200
    [row] = audit(user, "staff.login_failed")
    assert row.changes == {"username": user.username, "reason": "bad_credentials"}
    assert "wrong" not in str(row.changes)


def test_staff_enrol_themselves_from_the_admin(make_staff: Callable[..., User]) -> None:
    http, user = HttpClient(), make_staff(SUPPORT)
    login(http, user)

    page = http.get(ENROL).content.decode()
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    assert "<svg" in page and "otpauth://totp/NotifyHub" in page
    key = re.search(r'id="otp-secret">([A-Z2-7 ]+)<', page)
    assert key is not None and len(key.group(1).replace(" ", "")) == 32
    assert http.get(ENROL).content.decode().count(key.group(1)) == 1  # same key on reload

    response = http.post(ENROL, {"otp_token": code(device), "next": "/admin/audit/auditlog/"})
    assert response.status_code == 302 and response["Location"] == "/admin/audit/auditlog/"
    device.refresh_from_db()
    assert device.confirmed
    [row] = audit(user, "staff.otp_enrolled")
    assert row.changes == {"device": "Authenticator app", "device_id": device.pk}
    assert device.key not in str(row.changes)
    assert http.get("/admin/audit/auditlog/").status_code == 200  # this session is verified
    assert "Two-factor authentication is <b>on</b>" in http.get(ENROL).content.decode()

    # From now on the password alone is not enough.
    assert login(HttpClient(), user).status_code == 200
    assert login(HttpClient(), user, token=code(device, steps=1)).status_code == 302


def test_enrolment_refuses_a_wrong_code(make_staff: Callable[..., User]) -> None:
    http, user = HttpClient(), make_staff(SUPPORT)
    login(http, user)
    http.get(ENROL)
    device = TOTPDevice.objects.get(user=user)
    response = http.post(ENROL, {"otp_token": code(device, steps=-5), "next": "/admin/"})
    assert response.status_code == 200 and "That code does not match" in response.content.decode()
    device.refresh_from_db()
    assert not device.confirmed and not audit(user, "staff.otp_enrolled")


def test_a_device_added_after_login_locks_the_session_until_a_code(make_staff: Callable[..., User]) -> None:
    http, user = HttpClient(), make_staff(SUPPORT)
    login(http, user)
    confirmed_device(user)  # e.g. enrolled in another browser
    response = http.get("/admin/audit/auditlog/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_the_enrolment_page_is_for_logged_in_staff_only(make_staff: Callable[..., User]) -> None:
    response = HttpClient().get(ENROL)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    outsider = make_staff(is_staff=False)
    http = HttpClient()
    http.force_login(outsider)
    assert http.get(ENROL).status_code == 302
    assert not TOTPDevice.objects.filter(user=outsider).exists()


def test_enrolment_ignores_a_next_url_on_another_site(make_staff: Callable[..., User]) -> None:
    http, user = HttpClient(), make_staff(SUPPORT)
    login(http, user)
    http.get(ENROL)
    device = TOTPDevice.objects.get(user=user)
    response = http.post(ENROL, {"otp_token": code(device), "next": "https://evil.example/"})
    assert response["Location"] == "/admin/"


class TestRequired:
    """ADMIN_REQUIRE_OTP: staff without a device are sent to enrolment after their password
    and can use nothing else until they confirm one."""

    @pytest.fixture(autouse=True)
    def _required(self, settings: Any) -> None:
        settings.ADMIN_REQUIRE_OTP = True

    def test_staff_without_a_device_must_enrol_first(self, make_staff: Callable[..., User]) -> None:
        http, user = HttpClient(), make_staff(SUPPORT)
        response = login(http, user)
        assert response.status_code == 302 and response["Location"] == "/admin/"
        response = http.get("/admin/")
        assert response.status_code == 302 and response["Location"].startswith(ENROL)
        for url in ("/admin/audit/auditlog/", "/admin/password_change/", "/admin/login/"):
            assert http.get(url)["Location"].startswith(ENROL), url
        page = http.get(response["Location"]).content.decode()
        assert "Two-factor authentication is required" in page
        assert "/admin/audit/auditlog/" not in page  # no navigation to what they cannot use

        device = TOTPDevice.objects.get(user=user, confirmed=False)
        response = http.post(ENROL, {"otp_token": code(device), "next": "/admin/audit/auditlog/"})
        assert response["Location"] == "/admin/audit/auditlog/"
        assert http.get("/admin/audit/auditlog/").status_code == 200

    def test_a_staff_member_who_must_enrol_can_log_out(self, make_staff: Callable[..., User]) -> None:
        http, user = HttpClient(), make_staff(SUPPORT)
        login(http, user)
        assert http.post("/admin/logout/").status_code == 200
        assert http.get(ENROL)["Location"].startswith("/admin/login/")
        assert len(audit(user, "staff.logout")) == 1

    def test_enrolled_staff_log_in_with_their_code(self, make_staff: Callable[..., User]) -> None:
        http, user = HttpClient(), make_staff(SUPPORT)
        device = confirmed_device(user)
        assert login(http, user).status_code == 200
        assert login(http, user, token=code(device)).status_code == 302
        assert http.get("/admin/audit/auditlog/").status_code == 200

    def test_a_session_without_a_code_is_not_enough_even_for_a_superuser(
            self, make_staff: Callable[..., User]) -> None:
        http, user = HttpClient(), make_staff(is_superuser=True)
        http.force_login(user)  # e.g. a session from before the setting was turned on
        assert http.get("/admin/clients/client/")["Location"].startswith(ENROL)
