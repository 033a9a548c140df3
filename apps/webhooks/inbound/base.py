"""Inbound provider callbacks: one view per provider, each with `verify_signature()` and
`parse_events()` producing NotifyHub's own ProviderEvent (as django-anymail normalizes)."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from apps.core.exceptions import error_body
from apps.notifications.receipts import ProviderEvent, delivery_receipts_apply

logger = logging.getLogger(__name__)

# Seconds a provider is asked to wait before retrying a callback we could not store.
RETRY_AFTER_SECONDS = 5


class SignatureError(Exception):
    pass


class PayloadError(Exception):
    pass


@method_decorator(csrf_exempt, name="dispatch")
class ProviderWebhookView(View):
    provider: ClassVar[str]
    http_method_names = ["post"]
    # The test-mode variant of a callback (/api/v1/webhooks/test/…): signed by the test-mode
    # sandbox with the TEST_MODE_* credentials, so it may only touch test deliveries.
    test_only: ClassVar[bool] = False

    def verify_signature(self, request: HttpRequest) -> None:
        """Raises SignatureError unless the request is signed by the provider and fresh."""
        raise NotImplementedError

    def parse_events(self, request: HttpRequest) -> list[ProviderEvent]:
        raise NotImplementedError

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        try:
            self.verify_signature(request)
        except SignatureError as exc:
            logger.warning("%s webhook refused: %s", self.provider, exc)
            return JsonResponse(error_body("invalid_signature", str(exc)), status=403)
        try:
            events = self.parse_events(request)
        except PayloadError as exc:
            return JsonResponse(error_body("malformed_request", str(exc)), status=400)
        try:
            report = delivery_receipts_apply(events=events, test_only=self.test_only)
        except (OperationalError, InterfaceError) as exc:
            # The database is unreachable (or the batch kept losing lock races after its
            # retries): nothing was stored, and the provider retries a 503 later.
            logger.warning("%s webhook not applied, answering 503: %s", self.provider,
                           type(exc.__cause__ or exc).__name__)
            response = JsonResponse(error_body(
                "service_unavailable", "The receipts could not be stored now; retry later."),
                status=503)
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        return JsonResponse(
            {"received": report.received, "applied": report.applied,
             "unknown": report.unknown, "duplicates": report.duplicates}
        )
