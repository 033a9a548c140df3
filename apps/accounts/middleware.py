"""django_otp's middleware for the admin and other browser pages only (see
apps.core.middleware: the JSON API has no logged-in user to verify)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django_otp.middleware import OTPMiddleware

from apps.core.middleware import is_api_request


class BrowserOTPMiddleware(OTPMiddleware):
    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api_request(request):
            return self.get_response(request)  # type: ignore[no-any-return]
        return super().__call__(request)  # type: ignore[no-any-return]
