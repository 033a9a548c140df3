"""SMS and WhatsApp through Twilio's Messages API, with the official `twilio` SDK.

Both channels share the request and the error mapping; they differ in the address prefix, the
sender and WhatsApp's approved templates (Content SID)."""

from __future__ import annotations

import json
import threading
from typing import Any, ClassVar

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from .base import OutboundMessage, Provider, SendResult

# Twilio error code → (error_code we record, retryable?, suppress the address?)
# https://www.twilio.com/docs/api/errors
SEND_ERRORS: dict[int, tuple[str, bool, bool]] = {
    20003: ("provider_auth_error", False, False),
    20429: ("rate_limited", True, False),
    21211: ("invalid_number", False, True),
    21212: ("invalid_sender", False, False),
    21408: ("region_not_permitted", False, False),
    21602: ("empty_body", False, False),
    21604: ("missing_number", False, False),
    21606: ("invalid_sender", False, False),
    21610: ("unsubscribed", False, True),
    21611: ("sender_queue_full", True, False),
    21612: ("unroutable", False, False),
    21614: ("not_mobile", False, True),
    21617: ("body_too_long", False, False),
    63007: ("invalid_sender", False, False),
}

# Asynchronous status callback ErrorCode → (error_code, suppress the address?)
RECEIPT_ERRORS: dict[str, tuple[str, bool]] = {
    "30003": ("unreachable", False),
    "30004": ("blocked", True),
    "30005": ("unknown_destination", True),
    "30006": ("landline", True),
    "30007": ("carrier_filtered", False),
    "30008": ("unknown_error", False),
    "63014": ("whatsapp_blocked", True),
    "63016": ("template_required", False),
    "63024": ("invalid_recipient", True),
}

_local = threading.local()


def twilio_client() -> Client:
    """One SDK client per thread (its requests session is not shared across threads)."""
    key = (settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_API_BASE_URL)
    cached = getattr(_local, "client", None)
    if cached is None or cached[0] != key:
        client = Client(
            settings.TWILIO_ACCOUNT_SID,
            settings.TWILIO_AUTH_TOKEN,
            http_client=TwilioHttpClient(timeout=settings.TWILIO_TIMEOUT_SECONDS),
        )
        if settings.TWILIO_API_BASE_URL:
            client.api.base_url = settings.TWILIO_API_BASE_URL
        _local.client = (key, client)
    return _local.client[1]  # type: ignore[no-any-return]


class TwilioMessagesProvider(Provider):
    callback_path: ClassVar[str]

    def is_configured(self) -> bool:
        return bool(settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN)

    def address(self, number: str) -> str:
        return number

    def sender(self, message: OutboundMessage) -> str:
        raise NotImplementedError

    def build_payload(self, message: OutboundMessage) -> dict[str, Any]:
        if not message.to:
            raise ValueError("No phone number.")
        payload: dict[str, Any] = {
            "to": self.address(message.to),
            "from_": self.address(self.sender(message)),
            # The delivery id rides in the (signed) callback URL, so a status callback that
            # arrives before the worker stored Twilio's SID still finds its delivery.
            "status_callback": f"{settings.PUBLIC_BASE_URL}{self.callback_path}"
                               f"?delivery={message.delivery_id}",
        }
        if message.provider_template_id:
            payload["content_sid"] = message.provider_template_id
            payload["content_variables"] = json.dumps(
                {str(k): str(v) for k, v in message.template_variables.items()}
            )
        elif message.text:
            payload["body"] = message.text
        else:
            raise ValueError("The rendered message is empty.")
        return payload

    def call(self, payload: dict[str, Any], message: OutboundMessage) -> SendResult:
        try:
            created = twilio_client().messages.create(**payload)
        except TwilioRestException as exc:
            return self.classify_error(exc)
        except requests.Timeout:
            return SendResult.retryable(self.name, "timeout", "Twilio did not answer in time.")
        except requests.ConnectionError as exc:
            return SendResult.retryable(self.name, "connection_error", type(exc).__name__)
        segments = int(created.num_segments) if created.num_segments else None
        return SendResult.sent(self.name, str(created.sid), segments=segments)

    def classify_error(self, exc: TwilioRestException) -> SendResult:
        message = str(exc.msg or "")[:500]
        if exc.code in SEND_ERRORS:
            code, retryable, suppress = SEND_ERRORS[exc.code]
            if retryable:
                return SendResult.retryable(self.name, code, message)
            return SendResult.permanent(self.name, code, message, suppress=suppress)
        if exc.status == 429:
            return SendResult.retryable(self.name, "rate_limited", message)
        if exc.status >= 500:
            return SendResult.retryable(self.name, f"http_{exc.status}", message)
        if exc.status in (401, 403):
            return SendResult.permanent(self.name, "provider_auth_error", message)
        return SendResult.permanent(self.name, f"twilio_{exc.code or exc.status}", message)


class TwilioSmsProvider(TwilioMessagesProvider):
    name = "twilio_sms"
    channel = "sms"
    callback_path = "/api/v1/webhooks/twilio"

    def sender(self, message: OutboundMessage) -> str:
        return message.from_address or settings.TWILIO_SMS_FROM


class TwilioWhatsAppProvider(TwilioMessagesProvider):
    name = "twilio_whatsapp"
    channel = "whatsapp"
    callback_path = "/api/v1/webhooks/whatsapp"

    def address(self, number: str) -> str:
        return number if number.startswith("whatsapp:") else f"whatsapp:{number}"

    def sender(self, message: OutboundMessage) -> str:
        return message.from_address or settings.TWILIO_WHATSAPP_FROM
