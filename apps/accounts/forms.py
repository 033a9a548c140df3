"""The admin's login form (password, and the two-factor code when the account has a TOTP
device), the enrolment form, and password-change forms that record their change."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.admin.forms import AdminPasswordChangeForm as OwnPasswordChangeForm
from django.contrib.auth.forms import AdminPasswordChangeForm
from django.db import transaction

from apps.audit.services import audit_record

from .services import audit_staff_login_failed, staff_has_otp_device, staff_otp_verify

_CODE_ATTRS = {"autocomplete": "one-time-code", "inputmode": "numeric", "pattern": "[0-9]*",
               "size": 8}


class StaffAuthenticationForm(AdminAuthenticationForm):
    """Username and password, then — for an account with a confirmed TOTP device — its
    current code, in one step. Accounts without a device log in with their password (unless
    ADMIN_REQUIRE_OTP, where they are sent to enrol right after)."""

    otp_token = forms.CharField(
        required=False, max_length=8, label="Two-factor code",
        widget=forms.TextInput(attrs=_CODE_ATTRS),
        help_text="The 6-digit code from your authenticator app, if two-factor authentication "
                  "is on for your account.")

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "otp_required": "Enter the code from your authenticator app: two-factor authentication "
                        "is on for this account.",
        "otp_invalid": "That two-factor code is not valid (or was already used). Enter the "
                       "current code from your authenticator app.",
    }

    def confirm_login_allowed(self, user: Any) -> None:
        try:
            super().confirm_login_allowed(user)
        except forms.ValidationError:  # the right password of an account that is not staff
            audit_staff_login_failed(username=user.get_username(), reason="not_staff", user=user)
            raise

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        user = self.get_user()
        if user is None or not staff_has_otp_device(user=user):
            return cleaned
        token = "".join((cleaned.get("otp_token") or "").split())
        device = staff_otp_verify(user=user, token=token) if token else None
        if device is None:
            reason = "otp_invalid" if token else "otp_required"
            audit_staff_login_failed(username=user.get_username(), reason=reason, user=user)
            self.user_cache = None  # nobody is logged in by an invalid form
            raise forms.ValidationError(self.error_messages[reason], code=reason)
        user.otp_device = device  # type: ignore[attr-defined]  # django_otp marks the session verified at login
        return cleaned


class OtpEnrolForm(forms.Form):
    otp_token = forms.CharField(max_length=8, label="Code from the app",
                                widget=forms.TextInput(attrs={**_CODE_ATTRS, "autofocus": True}))

    def clean_otp_token(self) -> str:
        token = "".join(self.cleaned_data["otp_token"].split())
        if not token.isdigit():
            raise forms.ValidationError("Enter the digits shown by your authenticator app.")
        return token


class AuditedPasswordChangeForm(OwnPasswordChangeForm):
    """A staff user changing their own password (`staff.password_change`)."""

    @transaction.atomic
    def save(self, commit: bool = True) -> Any:
        user = super().save(commit=commit)
        audit_record(action="staff.password_change", object_type="user", object_id=user.pk)
        return user


class AuditedAdminPasswordChangeForm(AdminPasswordChangeForm):
    """An Administrator setting another user's password (`user.password_change`)."""

    @transaction.atomic
    def save(self, commit: bool = True) -> Any:
        user = super().save(commit=commit)
        audit_record(action="user.password_change", object_type="user", object_id=user.pk,
                     changes={"name": user.get_username(),
                              "usable_password": user.has_usable_password()})
        return user
