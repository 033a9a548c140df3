"""Email through SendGrid's v3 Mail Send API, with the official `sendgrid` SDK."""

from __future__ import annotations

import threading
from typing import Any
from urllib.error import URLError

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Category, Content, CustomArg, From, Header, Mail, To

from ..base import OutboundMessage, Provider, SendResult
from ..keepalive import KeepAliveClient

# custom_args come back on every Event Webhook event: how receipts find their delivery.
DELIVERY_ARG = "notifyhub_delivery_id"
NOTIFICATION_ARG = "notifyhub_notification_id"
REQUEST_ARG = "notifyhub_request_id"


_local = threading.local()


def api_client(api_key: str, host: str) -> SendGridAPIClient:
    """This thread's SDK client for the account: built once, its requests on the thread's
    keep-alive connection (channels/keepalive.py)."""
    clients: dict[tuple[str, str], SendGridAPIClient] = _local.__dict__.setdefault("clients", {})
    client = clients.get((api_key, host))
    if client is None:
        client = SendGridAPIClient(api_key=api_key, host=host)
        client.client = KeepAliveClient(host=client.host, request_headers=client._default_headers,
                                        version=3)
        clients[(api_key, host)] = client
    return client


def _retry_after(headers: Any) -> float | None:
    try:
        value = headers.get("Retry-After") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class SendGridProvider(Provider):
    name = "sendgrid"
    channel = "email"
    account_settings = ("SENDGRID_API_KEY", "SENDGRID_API_HOST")
    required_settings = ("SENDGRID_API_KEY", "SENDGRID_API_HOST")

    def build_payload(self, message: OutboundMessage) -> dict[str, Any]:
        if not message.to:
            raise ValueError("No email address.")
        if not (message.text or message.html):
            raise ValueError("The rendered email has no body.")
        mail = Mail(
            from_email=From(message.from_address or self.setting("DEFAULT_FROM_EMAIL")),
            to_emails=To(message.to),
            subject=message.subject or "(no subject)",
        )
        if message.text:
            mail.add_content(Content("text/plain", message.text))
        if message.html:
            mail.add_content(Content("text/html", message.html))
        for name, value in message.headers.items():
            mail.add_header(Header(name, value))
        mail.add_custom_arg(CustomArg(DELIVERY_ARG, message.delivery_id))
        mail.add_custom_arg(CustomArg(NOTIFICATION_ARG, message.notification_id))
        if message.request_id:
            mail.add_custom_arg(CustomArg(REQUEST_ARG, message.request_id))
        if message.category:
            mail.category = Category(message.category)
        return mail.get()  # type: ignore[no-any-return]

    def call(self, payload: dict[str, Any], message: OutboundMessage) -> SendResult:
        client = api_client(self.setting("SENDGRID_API_KEY"), self.setting("SENDGRID_API_HOST"))
        try:
            response = client.client.mail.send.post(
                request_body=payload, timeout=self.setting("SENDGRID_TIMEOUT_SECONDS")
            )
        except HTTPError as exc:
            return self._classify_http(exc.status_code, exc.body, exc.headers)
        except TimeoutError:
            return SendResult.retryable(self.name, "timeout", "SendGrid did not answer in time.")
        except URLError as exc:
            return SendResult.retryable(self.name, "connection_error", str(exc.reason))
        message_id = response.headers.get("X-Message-Id", "") if response.headers else ""
        if response.status_code in (200, 202):
            return SendResult.sent(self.name, message_id)
        return self._classify_http(response.status_code, response.body, response.headers)

    def _classify_http(self, status: int, body: Any, headers: Any) -> SendResult:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
        text = text[:500]
        if status == 429:
            return SendResult.retryable(self.name, "rate_limited", "SendGrid rate limit.",
                                        _retry_after(headers))
        if status >= 500:
            return SendResult.retryable(self.name, f"http_{status}", text or "Server error.",
                                        _retry_after(headers))
        if status in (401, 403):
            return SendResult.permanent(self.name, "provider_auth_error",
                                        "SendGrid refused the API key.")
        return SendResult.permanent(self.name, f"http_{status}", text or "Rejected.")
