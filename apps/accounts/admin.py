"""Users, groups (roles) and two-factor devices in the admin, each change recorded in the
audit log (`user.*`, `group.*`, `otp_device.*`): values of personal or secret fields (email,
names, password hash, device key) are never recorded, only that they changed."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.audit.admin import AuditedAdminMixin

from .forms import AuditedAdminPasswordChangeForm

for _model in (User, Group, TOTPDevice):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


@admin.register(User)
class StaffUserAdmin(AuditedAdminMixin, UserAdmin):  # type: ignore[type-arg]
    audit_object_type = "user"
    audit_private_fields = frozenset({"password", "email", "first_name", "last_name"})
    audit_m2m_fields = ("groups", "user_permissions")
    change_password_form = AuditedAdminPasswordChangeForm
    list_display = ["username", "is_staff", "is_superuser", "is_active", "roles", "last_login"]
    list_filter = ["is_staff", "is_superuser", "is_active", "groups"]

    def get_queryset(self, request: Any) -> Any:
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="roles")
    def roles(self, obj: User) -> str:
        return ", ".join(sorted(g.name for g in obj.groups.all()))


@admin.register(Group)
class RoleGroupAdmin(AuditedAdminMixin, GroupAdmin):  # type: ignore[type-arg]
    """Role groups are defined in apps/accounts/roles.py and re-applied by `manage.py
    sync_roles`: edits made here to those groups are overwritten by the next sync."""

    audit_object_type = "group"
    audit_m2m_fields = ("permissions",)


@admin.register(TOTPDevice)
class AuditedTOTPDeviceAdmin(AuditedAdminMixin, TOTPDeviceAdmin):
    """Administrators delete a device to reset someone's second factor (a lost phone)."""

    audit_object_type = "otp_device"
    audit_private_fields = frozenset({"key"})

    def audit_summary(self, obj: Any) -> dict[str, Any]:
        return {"name": obj.name, "user": obj.user.get_username(), "confirmed": obj.confirmed}
