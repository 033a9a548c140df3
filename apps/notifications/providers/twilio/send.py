"""SMS and WhatsApp through Twilio's Messages API, with the official `twilio` SDK.

Both channels share the request and the error mapping; they differ in the address prefix, the
sender and WhatsApp's approved templates (Content SID)."""

from __future__ import annotations

import json
import threading
from typing import Any, ClassVar
from urllib.parse import quote

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from ..base import TEST, OutboundMessage, Provider, SendResult

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


def twilio_client(account_sid: str, auth_token: str, base_url: str, timeout: float) -> Client:
    """One SDK client per thread and account (its requests session is not shared across
    threads); an empty base_url keeps the SDK's (Twilio's) own."""
    key = (account_sid, auth_token, base_url, timeout)
    clients: dict[tuple[Any, ...], Client] = getattr(_local, "clients", None) or {}
    _local.clients = clients
    client = clients.get(key)
    if client is None:
        client = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=timeout))
        if base_url:
            client.api.base_url = base_url
        if len(clients) >= 4:  # live + test; more only when settings change (tests)
            clients.clear()
        clients[key] = client
    return client


class TwilioMessagesProvider(Provider):
    # Status callbacks: /api/v1/webhooks/<callback_kind>, or /api/v1/webhooks/test/<kind> for
    # test mode (verified with the test-mode credentials, applied to test deliveries only).
    callback_kind: ClassVar[str]
    account_settings = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_BASE_URL")
    required_settings = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
    endpoint_settings = ("TWILIO_API_BASE_URL",)

    @property
    def callback_path(self) -> str:
        return f"/api/v1/webhooks/{'test/' if self.mode == TEST else ''}{self.callback_kind}"

    def client(self) -> Client:
        return twilio_client(self.setting("TWILIO_ACCOUNT_SID"), self.setting("TWILIO_AUTH_TOKEN"),
                             self.setting("TWILIO_API_BASE_URL"),
                             self.setting("TWILIO_TIMEOUT_SECONDS"))

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
            # So does the request id of the send, which the receipt carries on.
            "status_callback": f"{self.setting('PUBLIC_BASE_URL')}{self.callback_path}"
                               f"?delivery={message.delivery_id}"
                               + (f"&request_id={quote(message.request_id)}"
                                  if message.request_id else ""),
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
            created = self.client().messages.create(**payload)
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
    callback_kind = "twilio"

    def sender(self, message: OutboundMessage) -> str:
        return message.from_address or self.setting("TWILIO_SMS_FROM")


class TwilioWhatsAppProvider(TwilioMessagesProvider):
    name = "twilio_whatsapp"
    channel = "whatsapp"
    callback_kind = "whatsapp"

    def address(self, number: str) -> str:
        return number if number.startswith("whatsapp:") else f"whatsapp:{number}"

    def sender(self, message: OutboundMessage) -> str:
        return message.from_address or self.setting("TWILIO_WHATSAPP_FROM")
