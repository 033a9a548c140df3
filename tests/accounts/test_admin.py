"""Users, roles and two-factor devices in the admin: Administrators manage them, and every
change is in the audit log without personal or secret values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client as HttpClient
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts.roles import ADMINISTRATOR, PRODUCT_TEAM, SUPPORT
from apps.audit.models import AuditLog

from .conftest import PASSWORD, confirmed_device, login

pytestmark = pytest.mark.django_db


def rows(object_type: str, object_id: Any) -> list[AuditLog]:
    return list(AuditLog.objects.filter(object_type=object_type, object_id=str(object_id)).order_by("id"))


@pytest.fixture
def administrator(make_staff: Callable[..., User]) -> tuple[HttpClient, User]:
    http, user = HttpClient(), make_staff(ADMINISTRATOR)
    assert login(http, user).status_code == 302
    return http, user


def user_form(user: User, **changes: Any) -> dict[str, Any]:
    data = {"username": user.username, "first_name": "", "last_name": "", "email": user.email,
            "is_active": "on", "is_staff": "on", "groups": [g.pk for g in user.groups.all()],
            "user_permissions": [], "last_login_0": "", "last_login_1": "",
            "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"}
    return {**data, **changes}


def test_creating_staff_and_giving_them_a_role_is_audited(administrator: tuple[HttpClient, User]) -> None:
    http, admin = administrator
    response = http.post("/admin/auth/user/add/", {"username": "newbie", "usable_password": "true",
                                                    "password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 302
    user = User.objects.get(username="newbie")
    support = Group.objects.get(name=SUPPORT)
    response = http.post(f"/admin/auth/user/{user.pk}/change/",
                         user_form(user, email="newbie@example.com", groups=[support.pk]))
    assert response.status_code == 302, response.context["errors"] if response.context else response

    created, updated = rows("user", user.pk)
    assert (created.action, created.changes) == ("user.create", {"username": "newbie"})
    assert updated.action == "user.update" and updated.actor_display == admin.username
    assert updated.changes["groups"] == {"before": [], "after": [SUPPORT]}
    assert updated.changes["after"]["is_staff"] is True and "email" not in updated.changes["after"]
    assert updated.changes["fields"] == ["email"]
    assert "newbie@example.com" not in str(updated.changes)
    assert "pbkdf2" not in str(created.changes) and "md5" not in str(created.changes)

    user.refresh_from_db()
    assert user.has_perm("audit.view_auditlog") and not user.has_perm("templates.change_template")


def test_setting_a_password_is_audited_without_it(administrator: tuple[HttpClient, User],
                                                  make_staff: Callable[..., User]) -> None:
    http, _ = administrator
    user = make_staff(PRODUCT_TEAM)
    response = http.post(f"/admin/auth/user/{user.pk}/password/",
                         {"password1": "An0ther long one!", "password2": "An0ther long one!",
                          "usable_password": "true"})
    assert response.status_code == 302
    [row] = [r for r in rows("user", user.pk) if r.action == "user.password_change"]
    assert "An0ther" not in str(row.changes)
    assert login(HttpClient(), user, password="An0ther long one!").status_code == 302


def test_changing_ones_own_password_is_audited(make_staff: Callable[..., User]) -> None:
    http, user = HttpClient(), make_staff(SUPPORT)
    login(http, user)
    response = http.post("/admin/password_change/", {"old_password": PASSWORD,
                                                     "new_password1": "An0ther long one!",
                                                     "new_password2": "An0ther long one!"})
    assert response.status_code == 302
    [row] = [r for r in rows("user", user.pk) if r.action == "staff.password_change"]
    assert row.actor_display == user.username


def test_an_administrator_resets_a_lost_device(administrator: tuple[HttpClient, User],
                                               make_staff: Callable[..., User]) -> None:
    http, _ = administrator
    user = make_staff(SUPPORT)
    device = confirmed_device(user)
    page = http.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/").content.decode()
    assert device.key not in page  # nobody sees another user's key
    response = http.post(f"/admin/otp_totp/totpdevice/{device.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=user).exists()
    [row] = rows("otp_device", device.pk)
    assert row.action == "otp_device.delete"
    assert row.changes == {"name": "phone", "user": user.username, "confirmed": True}
    assert login(HttpClient(), user).status_code == 302  # the password is enough again


def test_staff_login_logout_and_failures_are_audited(make_staff: Callable[..., User]) -> None:
    http, user = HttpClient(), make_staff(SUPPORT)
    login(http, user, password="not it")
    http.post("/admin/login/", {"username": "nobody-here", "password": "x"})
    login(http, user)
    http.post("/admin/logout/")

    actions = [(r.action, r.changes.get("reason")) for r in rows("user", user.pk)]
    assert actions == [("staff.login_failed", "bad_credentials"), ("staff.login", None),
                       ("staff.logout", None)]
    [unknown] = AuditLog.objects.filter(action="staff.login_failed", actor_display="nobody-here")
    assert unknown.object_id == "" and unknown.actor_type == "user"
    assert all("not it" not in str(r.changes) for r in rows("user", user.pk))

    customer = make_staff(is_staff=False)
    assert login(HttpClient(), customer).status_code == 200
    assert [(r.action, r.changes["reason"]) for r in rows("user", customer.pk)] == [
        ("staff.login_failed", "not_staff")]
