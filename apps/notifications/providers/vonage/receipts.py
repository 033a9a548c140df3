"""Vonage Messages API webhooks: message status (SMS and WhatsApp) and inbound messages.
Routes: `urlpatterns` below (under /api/v1/).

Vonage signs them as its "signed webhooks" do: `Authorization: Bearer <JWT>`, HS256 with the
account's signature secret, whose `payload_hash` claim is the SHA-256 (hex) of the exact body
and `iat` its issue time. Unsigned, wrongly signed, tampered (hash mismatch) or stale (`iat`
older than PROVIDER_WEBHOOK_MAX_AGE_SECONDS, or in the future) → 403."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

import jwt
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from apps.core.exceptions import error_body
from apps.notifications.models import DeliveryStatus
from apps.notifications.providers.base import Outcome
from apps.notifications.providers.vonage.send import (
    RECEIPT_ERRORS,
    parse_client_ref,
    vonage_reply_send,
)
from apps.notifications.receipts import ProviderEvent
from apps.preferences.models import ConsentSource
from apps.preferences.services import ChangeContext, inbound_keyword_apply
from apps.webhooks.inbound.base import PayloadError, ProviderWebhookView, SignatureError

from ..conf import provider_setting

logger = logging.getLogger(__name__)

# A few seconds of clock skew between Vonage and us.
CLOCK_SKEW_SECONDS = 30

# status → (our event name, the delivery status it implies)
STATUS_MAP: dict[str, tuple[str, DeliveryStatus | None]] = {
    "submitted": ("carrier_sent", DeliveryStatus.SENT),
    "delivered": ("delivered", DeliveryStatus.DELIVERED),
    "read": ("read", DeliveryStatus.DELIVERED),
    "rejected": ("rejected", DeliveryStatus.FAILED),
    "undeliverable": ("undelivered", DeliveryStatus.FAILED),
    "failed": ("failed", DeliveryStatus.FAILED),
}


def verify_vonage_signature(request: HttpRequest, secret: str) -> dict[str, Any]:
    """The JWT's claims, or SignatureError (see the module docstring)."""
    if not secret:
        raise SignatureError("The Vonage signature secret is not configured.")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SignatureError("Missing Authorization: Bearer <signed JWT>.")
    try:
        claims: dict[str, Any] = jwt.decode(token.strip(), secret, algorithms=["HS256"],
                                            options={"require": ["iat", "payload_hash"]})
    except jwt.InvalidTokenError as exc:
        raise SignatureError(f"Invalid JWT: {type(exc).__name__}.") from exc
    expected = hashlib.sha256(request.body).hexdigest()
    if not hmac.compare_digest(str(claims.get("payload_hash", "")), expected):
        raise SignatureError("payload_hash does not match the body.")
    try:
        issued = float(claims["iat"])
    except (TypeError, ValueError) as exc:
        raise SignatureError("iat is not a time.") from exc
    age = time.time() - issued
    if age > settings.PROVIDER_WEBHOOK_MAX_AGE_SECONDS or age < -CLOCK_SKEW_SECONDS:
        raise SignatureError("The signature is stale.")
    return claims


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        data = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError("The body is not JSON.") from exc
    if not isinstance(data, dict):
        raise PayloadError("The body must be a JSON object.")
    return data


def _occurred_at(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(tz=UTC)


class VonageStatusWebhookView(ProviderWebhookView):
    """`POST /api/v1/webhooks/vonage`: one status per request, SMS and WhatsApp alike."""

    provider = "vonage"
    secret_setting: ClassVar[str] = "VONAGE_SIGNATURE_SECRET"  # noqa: S105 - a setting name

    def verify_signature(self, request: HttpRequest) -> None:
        verify_vonage_signature(request, provider_setting(self.secret_setting, ""))

    def parse_events(self, request: HttpRequest) -> list[ProviderEvent]:
        data = _json_body(request)
        uuid, status = str(data.get("message_uuid") or ""), str(data.get("status") or "").lower()
        if not uuid or not status:
            raise PayloadError("message_uuid and status are required.")
        if status not in STATUS_MAP:
            return []
        name, implied = STATUS_MAP[status]
        channel = str(data.get("channel") or "sms")
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        error_code = str(error.get("title") or "") if error else ""
        code, suppress = RECEIPT_ERRORS.get(error_code, (f"vonage_{error_code}" if error_code else "", False))
        failed = implied == DeliveryStatus.FAILED
        return [ProviderEvent(
            provider=f"vonage_{'whatsapp' if channel == 'whatsapp' else 'sms'}",
            event=name,
            status=implied,
            occurred_at=_occurred_at(data.get("timestamp")),
            delivery_id=parse_client_ref(str(data.get("client_ref") or ""))[0],
            request_id=parse_client_ref(str(data.get("client_ref") or ""))[1][:64],
            provider_message_id=uuid,
            provider_event_id=f"{uuid}:{status}",
            error_code=code if failed else "",
            error_message=str(error.get("detail") or "")[:500] if failed and error else "",
            detail={"vonage_status": status, **({"error_code": error_code} if error_code else {})},
            suppress_address=suppress and failed,
        )]


class VonageTestModeStatusWebhookView(VonageStatusWebhookView):
    """Status webhooks of test-mode sends (the sandbox, signed with the test-mode secret):
    test deliveries only."""

    secret_setting = "TEST_MODE_VONAGE_SIGNATURE_SECRET"  # noqa: S105 - a setting name
    test_only = True


@method_decorator(csrf_exempt, name="dispatch")
class VonageInboundWebhookView(View):
    """`POST /api/v1/webhooks/vonage/inbound`: a person texting (SMS) or writing (WhatsApp) to
    one of our Vonage numbers. STOP/START/HELP keywords as through Twilio
    (`inbound_keyword_apply`). Vonage expects a 200 and reads nothing in it, so the reply Twilio
    gets in its TwiML answer (HELP's text) goes out as a message of its own
    (`vonage_reply_send`)."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            verify_vonage_signature(request, provider_setting("VONAGE_SIGNATURE_SECRET"))
        except SignatureError as exc:
            logger.warning("vonage inbound webhook refused: %s", exc)
            return JsonResponse(error_body("invalid_signature", str(exc)), status=403)
        try:
            data = _json_body(request)
        except PayloadError as exc:
            return JsonResponse(error_body("malformed_request", str(exc)), status=400)
        number = str(data.get("from") or "").strip().lstrip("+")
        if not number.isdigit():
            return JsonResponse(error_body("malformed_request", "from must be a phone number.",
                                           {"from": ["A phone number is required."]}), status=400)
        whatsapp = data.get("channel") == "whatsapp"
        from_ = f"{'whatsapp:' if whatsapp else ''}+{number}"
        to = "+" + str(data.get("to") or "").strip().lstrip("+")
        context = ChangeContext.from_request(
            request,
            source=ConsentSource.WHATSAPP_KEYWORD if whatsapp else ConsentSource.SMS_KEYWORD,
            actor=from_,
            detail={"message_sid": str(data.get("message_uuid") or ""), "to": to,
                    "provider": "vonage"},
        )
        outcome = inbound_keyword_apply(from_=from_, body=str(data.get("text") or ""),
                                        context=context, to=f"{'whatsapp:' if whatsapp else ''}{to}")
        replied = ""
        if outcome.reply:
            result = vonage_reply_send(channel=outcome.channel, to=from_, from_=to,
                                       text=outcome.reply)
            replied = result.outcome.value
            if result.outcome != Outcome.SENT:
                logger.warning("vonage %s reply to an inbound %s not sent: %s", outcome.channel,
                               outcome.keyword, result.error_code)
        return JsonResponse({"keyword": outcome.keyword, "channel": outcome.channel,
                             "recipients": outcome.recipients, "changed": outcome.changed,
                             "reply": replied})


urlpatterns = [
    path("webhooks/vonage", VonageStatusWebhookView.as_view(), name="webhook-vonage"),
    path("webhooks/vonage/inbound", VonageInboundWebhookView.as_view(),
         name="webhook-vonage-inbound"),
    path("webhooks/test/vonage", VonageTestModeStatusWebhookView.as_view(),
         name="webhook-test-vonage"),
]
