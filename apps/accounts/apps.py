from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    default = True  # this module also holds StaffAdminConfig
    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Staff accounts"

    def ready(self) -> None:
        from .signals import connect

        connect()


class StaffAdminConfig(admin_apps.AdminConfig):
    default = False
    """django.contrib.admin with NotifyHub's site as the default `admin.site`: the optional
    (or, with ADMIN_REQUIRE_OTP, mandatory) TOTP second factor (site.py)."""

    default_site = "apps.accounts.site.StaffAdminSite"
