"""Twilio's callbacks: status callbacks for SMS and WhatsApp, and inbound messages (a person
texting one of our numbers: STOP-like keywords opt the number out of the channel, START-like
ones back in, HELP answers with the help text; the answer is TwiML). All signed with
X-Twilio-Signature. Routes: `urlpatterns` below (under /api/v1/)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, ClassVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from apps.core.exceptions import error_body
from apps.notifications.models import DeliveryStatus
from apps.notifications.providers.twilio.send import RECEIPT_ERRORS
from apps.notifications.receipts import ProviderEvent
from apps.preferences.models import ConsentSource
from apps.preferences.services import ChangeContext, inbound_keyword_apply
from apps.webhooks.inbound.base import PayloadError, ProviderWebhookView, SignatureError

from ..conf import provider_setting

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
        token = provider_setting(self.auth_token_setting, "")
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
                request_id=request.GET.get("request_id", "")[:64],
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


logger = logging.getLogger(__name__)


def verify_twilio_signature(request: HttpRequest) -> None:
    """The same check as the status callbacks (TwilioStatusWebhookView)."""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        raise SignatureError("Missing X-Twilio-Signature.")
    validator = RequestValidator(provider_setting("TWILIO_AUTH_TOKEN"))
    if not validator.validate(callback_url(request), request.POST.dict(), signature):
        raise SignatureError("Signature does not match.")


def twiml(reply: str = "") -> HttpResponse:
    response = MessagingResponse()
    if reply:
        response.message(reply)
    return HttpResponse(str(response), content_type="text/xml; charset=utf-8")


@method_decorator(csrf_exempt, name="dispatch")
class TwilioInboundWebhookView(View):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            verify_twilio_signature(request)
        except SignatureError as exc:
            logger.warning("twilio inbound webhook refused: %s", exc)
            return JsonResponse(error_body("invalid_signature", str(exc)), status=403)
        from_ = request.POST.get("From", "").strip()
        if not from_:
            return JsonResponse(error_body("malformed_request", "From is required.",
                                           {"From": ["This field is required."]}), status=400)
        whatsapp = from_.lower().startswith("whatsapp:")
        context = ChangeContext.from_request(
            request,
            source=ConsentSource.WHATSAPP_KEYWORD if whatsapp else ConsentSource.SMS_KEYWORD,
            actor=from_,
            detail={"message_sid": request.POST.get("MessageSid", ""),
                    "to": request.POST.get("To", "")},
        )
        outcome = inbound_keyword_apply(from_=from_, body=request.POST.get("Body", ""),
                                        context=context, to=request.POST.get("To", ""))
        return twiml(outcome.reply)


urlpatterns = [
    path("webhooks/twilio", TwilioStatusWebhookView.as_view(), name="webhook-twilio"),
    path("webhooks/whatsapp", WhatsAppStatusWebhookView.as_view(), name="webhook-whatsapp"),
    path("webhooks/twilio/inbound", TwilioInboundWebhookView.as_view(),
         name="webhook-twilio-inbound"),
    # Receipts of test-mode sends (the sandbox test keys use): test deliveries only.
    path("webhooks/test/twilio", TwilioTestModeStatusWebhookView.as_view(),
         name="webhook-test-twilio"),
    path("webhooks/test/whatsapp", WhatsAppTestModeStatusWebhookView.as_view(),
         name="webhook-test-whatsapp"),
]
