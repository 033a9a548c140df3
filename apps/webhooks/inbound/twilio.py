"""Twilio status callbacks for SMS and WhatsApp, signed with X-Twilio-Signature."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from django.conf import settings
from django.http import HttpRequest
from twilio.request_validator import RequestValidator

from apps.notifications.channels.twilio_messages import RECEIPT_ERRORS
from apps.notifications.models import DeliveryStatus
from apps.notifications.receipts import ProviderEvent

from .base import PayloadError, ProviderWebhookView, SignatureError

# MessageStatus → (our event name, the delivery status it implies)
STATUS_MAP: dict[str, tuple[str, DeliveryStatus | None]] = {
    "accepted": ("provider_accepted", None),
    "queued": ("provider_queued", None),
    "sending": ("provider_sending", None),
    "sent": ("carrier_sent", DeliveryStatus.SENT),
    "delivered": ("delivered", DeliveryStatus.DELIVERED),
    "read": ("read", DeliveryStatus.DELIVERED),
    "undelivered": ("undelivered", DeliveryStatus.FAILED),
    "failed": ("failed", DeliveryStatus.FAILED),
    "canceled": ("provider_canceled", DeliveryStatus.FAILED),
}


def callback_url(request: HttpRequest) -> str:
    """The URL Twilio signed: our public base URL (as given to Twilio) + the path."""
    return f"{settings.PUBLIC_BASE_URL}{request.get_full_path()}"


class TwilioStatusWebhookView(ProviderWebhookView):
    provider = "twilio_sms"
    auth_token_setting: ClassVar[str] = "TWILIO_AUTH_TOKEN"  # noqa: S105 - a setting name

    def verify_signature(self, request: HttpRequest) -> None:
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature:
            raise SignatureError("Missing X-Twilio-Signature.")
        token = getattr(settings, self.auth_token_setting, "")
        if not token:
            raise SignatureError(f"{self.auth_token_setting} is not configured.")
        validator = RequestValidator(token)
        if not validator.validate(callback_url(request), request.POST.dict(), signature):
            raise SignatureError("Signature does not match.")

    def parse_events(self, request: HttpRequest) -> list[ProviderEvent]:
        sid = request.POST.get("MessageSid") or request.POST.get("SmsSid") or ""
        status = (request.POST.get("MessageStatus") or request.POST.get("SmsStatus") or "").lower()
        if not sid or not status:
            raise PayloadError("MessageSid and MessageStatus are required.")
        if status not in STATUS_MAP:
            return []
        name, implied = STATUS_MAP[status]
        error_code = request.POST.get("ErrorCode", "")
        code, suppress = RECEIPT_ERRORS.get(error_code, (f"twilio_{error_code}" if error_code else "", False))
        return [
            ProviderEvent(
                provider=self.provider,
                event=name,
                status=implied,
                occurred_at=datetime.now(tz=UTC),
                delivery_id=request.GET.get("delivery", ""),
                provider_message_id=sid,
                # Twilio sends each status once per message; a repeat is a retry of the same.
                provider_event_id=f"{sid}:{status}",
                error_code=code if implied == DeliveryStatus.FAILED else "",
                error_message=(f"Twilio error {error_code}" if error_code else ""),
                detail={"twilio_status": status, **({"error_code": error_code} if error_code else {})},
                suppress_address=suppress and implied == DeliveryStatus.FAILED,
            )
        ]


class WhatsAppStatusWebhookView(TwilioStatusWebhookView):
    provider = "twilio_whatsapp"


class TwilioTestModeStatusWebhookView(TwilioStatusWebhookView):
    """Status callbacks of test-mode SMS (the sandbox, signed with TEST_MODE_TWILIO_AUTH_TOKEN):
    test deliveries only."""

    auth_token_setting = "TEST_MODE_TWILIO_AUTH_TOKEN"  # noqa: S105 - a setting name
    test_only = True


class WhatsAppTestModeStatusWebhookView(WhatsAppStatusWebhookView):
    auth_token_setting = "TEST_MODE_TWILIO_AUTH_TOKEN"  # noqa: S105 - a setting name
    test_only = True
