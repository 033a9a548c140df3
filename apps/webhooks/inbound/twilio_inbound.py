"""Twilio inbound messages (a person texting one of our SMS or WhatsApp numbers):
`POST /api/v1/webhooks/twilio/inbound`, signed with X-Twilio-Signature like the status
callbacks. STOP-like keywords opt the number out of the channel (and queue the one
confirmation), START-like ones back in, HELP answers with the help text; the answer is TwiML."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from apps.core.exceptions import error_body
from apps.preferences.models import ConsentSource
from apps.preferences.services import ChangeContext, inbound_keyword_apply

from .base import SignatureError
from .twilio import callback_url

logger = logging.getLogger(__name__)


def verify_twilio_signature(request: HttpRequest) -> None:
    """The same check as the status callbacks (TwilioStatusWebhookView)."""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        raise SignatureError("Missing X-Twilio-Signature.")
    validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)
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
