"""SMS and WhatsApp through Vonage's Messages API (`POST /v1/messages`), with the official
`vonage` SDK (`Vonage(Auth(api_key, api_secret)).messages.send(Sms(...))`).

Both channels share the request and the error mapping; they differ in the message model, the
sender and WhatsApp's approved templates. The delivery id rides as `client_ref`, which every
status webhook carries back (receipts find their delivery even before the message UUID is
stored).

The SDK always builds `https://{api_host}/...`. VONAGE_API_BASE_URL empty keeps its real host
(api.nexmo.com); an `http://host:port` base (the sandbox) is reached through a transport
adapter mounted for that host only, which sends the SDK's request over plain HTTP."""

from __future__ import annotations

import threading
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from vonage import Auth, HttpClientOptions, Vonage
from vonage_http_client.errors import HttpRequestError
from vonage_messages import Sms, WhatsappTemplate, WhatsappText
from vonage_messages.models import WhatsappTemplateResource

from ..base import TEST, OutboundMessage, Provider, SendResult

# Vonage Messages API error code (the number ending the problem's `type` URL, also the
# status webhook's `error.title`) → (error_code we record, retryable?, suppress the address?)
# https://developer.vonage.com/en/api-errors/messages
SEND_ERRORS: dict[int, tuple[str, bool, bool]] = {
    1000: ("rate_limited", True, False),  # Throttled
    1010: ("missing_params", False, False),
    1020: ("invalid_params", False, False),
    1030: ("provider_error", True, False),  # Internal error
    1050: ("number_barred", False, True),
    1090: ("body_too_long", False, False),
    1120: ("invalid_sender", False, False),  # Illegal sender address - rejected
    1170: ("invalid_number", False, True),  # Invalid or missing MSISDN
    1240: ("unsubscribed", False, True),  # Illegal number: the recipient opted out
    1250: ("unroutable", False, False),
}
# Status webhook error codes (`error.title`) → (error_code, suppress the address?)
RECEIPT_ERRORS: dict[str, tuple[str, bool]] = {
    "1170": ("invalid_number", True),
    "1240": ("unsubscribed", True),
    "1250": ("unroutable", False),
    "1260": ("unreachable", False),  # Destination unreachable
    "1300": ("whatsapp_blocked", True),  # The user blocked the business
    "1340": ("template_required", False),  # Outside the 24 h window: a template is needed
}

_local = threading.local()


class PlainHttpAdapter(HTTPAdapter):
    """Sends the SDK's `https://host` requests for one host as `http://`: how the SDK reaches
    an HTTP-only endpoint (the sandbox) without touching anything else it does."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        if request.url and request.url.startswith("https://"):
            request.url = "http://" + request.url[len("https://"):]
        return super().send(request, *args, **kwargs)


def vonage_client(api_key: str, api_secret: str, base_url: str, timeout: float) -> Vonage:
    """One SDK client per thread and account (its requests session is not shared across
    threads). Retries are ours (the dispatch's policy), not the SDK's."""
    key = (api_key, api_secret, base_url, timeout)
    clients: dict[tuple[Any, ...], Vonage] = _local.__dict__.setdefault("clients", {})
    client = clients.get(key)
    if client is None:
        parts = urlsplit(base_url) if base_url else None
        options: dict[str, Any] = {"timeout": max(round(timeout), 1), "max_retries": 0}
        if parts is not None and parts.netloc:
            options["api_host"] = parts.netloc
        client = Vonage(Auth(api_key=api_key, api_secret=api_secret),
                        HttpClientOptions(**options))
        if parts is not None and parts.scheme == "http":
            client.http_client._session.mount(f"https://{parts.netloc}", PlainHttpAdapter())
        if len(clients) >= 4:  # live + test; more only when settings change (tests)
            clients.clear()
        clients[key] = client
    return client


def _number(value: str) -> str:
    """Vonage's number format: E.164 digits without the leading plus."""
    return value.removeprefix("whatsapp:").strip().lstrip("+")


def error_number(exc: HttpRequestError) -> int | None:
    """The Vonage error code of an RFC 7807 problem (`type` ends in `#1170`, say)."""
    try:
        body = exc.response.json()
    except ValueError:
        return None
    kind = str(body.get("type", "")) if isinstance(body, dict) else ""
    tail = kind.rsplit("#", 1)[-1]
    return int(tail) if tail.isdigit() else None


def error_detail(exc: HttpRequestError) -> str:
    try:
        body = exc.response.json()
    except ValueError:
        return exc.response.text[:500]
    if not isinstance(body, dict):
        return ""
    return str(body.get("detail") or body.get("title") or "")[:500]


def client_ref(message: OutboundMessage) -> str:
    """What Vonage echoes on every status webhook (at most 100 characters): the delivery id,
    then the request id of the send ("<delivery id>:<request id>")."""
    ref = message.delivery_id
    if message.request_id:
        ref = f"{ref}:{message.request_id}"[:100]
    return ref


def parse_client_ref(value: str) -> tuple[str, str]:
    """(delivery id, request id) from a client_ref."""
    delivery_id, _, request_id = value.partition(":")
    return delivery_id, request_id


class VonageMessagesProvider(Provider):
    # Status webhooks: /api/v1/webhooks/vonage, or /api/v1/webhooks/test/vonage for test mode
    # (verified with the test-mode signature secret, applied to test deliveries only).
    callback_kind: ClassVar[str] = "vonage"
    account_settings = ("VONAGE_API_KEY", "VONAGE_API_SECRET", "VONAGE_API_BASE_URL")
    required_settings = ("VONAGE_API_KEY", "VONAGE_API_SECRET")
    endpoint_settings = ("VONAGE_API_BASE_URL",)

    @property
    def callback_url(self) -> str:
        return (f"{self.setting('PUBLIC_BASE_URL')}/api/v1/webhooks/"
                f"{'test/' if self.mode == TEST else ''}{self.callback_kind}")

    def client(self) -> Vonage:
        return vonage_client(self.setting("VONAGE_API_KEY"), self.setting("VONAGE_API_SECRET"),
                             self.setting("VONAGE_API_BASE_URL"),
                             self.setting("VONAGE_TIMEOUT_SECONDS"))

    def sender(self, message: OutboundMessage) -> str:
        raise NotImplementedError

    def common(self, message: OutboundMessage) -> dict[str, Any]:
        if not message.to:
            raise ValueError("No phone number.")
        return {"to": _number(message.to), "from_": _number(self.sender(message)),
                "client_ref": client_ref(message) or None, "webhook_url": self.callback_url}

    def call(self, payload: Any, message: OutboundMessage) -> SendResult:
        try:
            response = self.client().messages.send(payload)
        except HttpRequestError as exc:
            return self.classify_error(exc)
        except requests.Timeout:
            return SendResult.retryable(self.name, "timeout", "Vonage did not answer in time.")
        except requests.ConnectionError as exc:
            return SendResult.retryable(self.name, "connection_error", type(exc).__name__)
        return SendResult.sent(self.name, str(response.message_uuid))

    def classify_error(self, exc: HttpRequestError) -> SendResult:
        status = exc.response.status_code
        number = error_number(exc)
        detail = error_detail(exc)
        if number in SEND_ERRORS:
            code, retryable, suppress = SEND_ERRORS[number]
            if retryable:
                return SendResult.retryable(self.name, code, detail, _retry_after(exc))
            return SendResult.permanent(self.name, code, detail, suppress=suppress)
        if status == 429:
            return SendResult.retryable(self.name, "rate_limited", detail, _retry_after(exc))
        if status >= 500:
            return SendResult.retryable(self.name, f"http_{status}", detail, _retry_after(exc))
        if status in (401, 403):
            return SendResult.permanent(self.name, "provider_auth_error", detail)
        return SendResult.permanent(self.name, f"vonage_{number or status}", detail)


def _retry_after(exc: HttpRequestError) -> float | None:
    try:
        value = exc.response.headers.get("Retry-After")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class VonageSmsProvider(VonageMessagesProvider):
    name = "vonage_sms"
    channel = "sms"

    def sender(self, message: OutboundMessage) -> str:
        return message.from_address or self.setting("VONAGE_SMS_FROM")

    def build_payload(self, message: OutboundMessage) -> Sms:
        if not message.text:
            raise ValueError("The rendered message is empty.")
        return Sms(text=message.text, **self.common(message))


class VonageWhatsAppProvider(VonageMessagesProvider):
    name = "vonage_whatsapp"
    channel = "whatsapp"

    def sender(self, message: OutboundMessage) -> str:
        return message.from_address or self.setting("VONAGE_WHATSAPP_FROM")

    def cannot_send(self, message: OutboundMessage) -> str:
        # A Twilio Content SID names a template approved in the Twilio account: Vonage has no
        # such template, and its rendered text is no substitute (outside the 24-hour customer
        # service window WhatsApp accepts only an approved template). Failover skips Vonage
        # for such a message: it waits for Twilio.
        if message.provider_template_id.startswith("HX"):
            return "The template is a Twilio Content SID; Vonage has no such template."
        return ""

    def build_payload(self, message: OutboundMessage) -> WhatsappText | WhatsappTemplate:
        if reason := self.cannot_send(message):
            raise ValueError(reason)
        if message.provider_template_id:
            # An approved template: Vonage names it "namespace:name"; its parameters in order.
            parameters = [str(v) for _, v in sorted(message.template_variables.items(),
                                                     key=lambda kv: str(kv[0]))]
            return WhatsappTemplate(
                template=WhatsappTemplateResource(name=message.provider_template_id,
                                                  parameters=parameters or None),
                **self.common(message))
        if not message.text:
            raise ValueError("The rendered message is empty.")
        return WhatsappText(text=message.text, **self.common(message))


def vonage_reply_send(*, channel: str, to: str, from_: str, text: str) -> SendResult:
    """The answer to an inbound message (HELP: the same text Twilio's TwiML answer carries).
    Vonage reads nothing in a webhook's answer, so a reply is an outbound message of its own,
    from the number the person wrote to, through the Messages API (live account). Sent at once
    and not retried, like the TwiML reply: a lost HELP answer is asked again by texting HELP."""
    provider = {"sms": VonageSmsProvider, "whatsapp": VonageWhatsAppProvider}[channel]()
    return provider.send(OutboundMessage(delivery_id="", notification_id="", client_id="",
                                         channel=channel, to=to, from_address=from_, text=text))
