"""Staff accounts: roles (groups) and the optional TOTP second factor, each change with its
audit row in the same transaction."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.audit.context import Actor
from apps.audit.models import ActorType
from apps.audit.services import audit_record

from .roles import RoleChange, roles_apply

logger = logging.getLogger(__name__)

DEVICE_NAME = "Authenticator app"
MAX_USERNAME = 150


@transaction.atomic
def roles_sync() -> list[RoleChange]:
    """Creates the role groups and re-applies their permission sets (roles.py); one
    `roles.sync` audit row when anything changed."""
    changes = roles_apply(group_model=Group, permission_model=Permission,
                          content_type_model=ContentType)
    changed = {c.group: {"created": c.created, "added": c.added, "removed": c.removed}
               for c in changes if c.changed}
    if changed:
        audit_record(action="roles.sync", object_type="group", changes={"groups": changed})
    return changes


def _user_actor(user: Any) -> Actor:
    return Actor(ActorType.USER, str(user.pk), user.get_username())


# -- two-factor (TOTP) ------------------------------------------------------------------------


def staff_otp_pending_device(*, user: AbstractBaseUser) -> TOTPDevice:
    """The user's unconfirmed TOTP device (its key is shown as a QR code until it is
    confirmed with a first code); created on first use, reused afterwards."""
    device = (TOTPDevice.objects.filter(user=user, confirmed=False).order_by("id").first())
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
    return device


@transaction.atomic
def staff_otp_confirm(*, user: AbstractBaseUser, device_id: int, token: str) -> TOTPDevice | None:
    """Confirms the user's pending device with a code from it (`staff.otp_enrolled`), or
    None when the code is wrong (a failure counts towards the device's throttling)."""
    device = (TOTPDevice.objects.select_for_update()
              .filter(pk=device_id, user=user, confirmed=False).first())
    if device is None or not device.verify_token(token):
        return None
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    audit_record(action="staff.otp_enrolled", object_type="user", object_id=user.pk,
                 actor=_user_actor(user), changes={"device": device.name, "device_id": device.pk})
    return device


def staff_otp_verify(*, user: AbstractBaseUser, token: str) -> TOTPDevice | None:
    """The user's confirmed TOTP device that accepts `token`, or None. Each device refuses a
    code it already accepted, and throttles after failures."""
    with transaction.atomic():
        for device in TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).order_by("id"):
            if device.verify_token(token):
                return device
    return None


def staff_has_otp_device(*, user: Any) -> bool:
    return TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).exists()


# -- logins (auth signals, signals.py) --------------------------------------------------------


def audit_staff_login(*, user: Any) -> None:
    verified = getattr(user, "otp_device", None) is not None
    audit_record(action="staff.login", object_type="user", object_id=user.pk,
                 actor=_user_actor(user), changes={"otp": verified})


def audit_staff_logout(*, user: Any) -> None:
    if user is None or not getattr(user, "is_authenticated", False):
        return
    audit_record(action="staff.logout", object_type="user", object_id=user.pk,
                 actor=_user_actor(user))


def audit_staff_login_failed(*, username: str, reason: str, user: Any = None) -> None:
    """A refused login: wrong password (or unknown username), or a right password with a
    missing or wrong two-factor code. The username typed is kept (never the password)."""
    username = (username or "")[:MAX_USERNAME]
    actor = Actor(ActorType.USER, str(user.pk) if user is not None else "", username)
    audit_record(action="staff.login_failed", object_type="user",
                 object_id=user.pk if user is not None else "", actor=actor,
                 changes={"username": username, "reason": reason})
