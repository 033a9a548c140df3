"""SendGrid Event Webhook: ECDSA-signed batches of events."""

from __future__ import annotations

import binascii
import functools
import json
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

from cryptography.exceptions import UnsupportedAlgorithm
from django.conf import settings
from django.http import HttpRequest
from django.urls import path
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader

from apps.notifications.models import DeliveryStatus
from apps.notifications.providers.sendgrid.send import DELIVERY_ARG, REQUEST_ARG
from apps.notifications.receipts import ProviderEvent
from apps.webhooks.inbound.base import PayloadError, ProviderWebhookView, SignatureError

from ..conf import provider_setting

# SendGrid event → (NotifyHub event name, delivery status it implies).
EVENT_MAP: dict[str, tuple[str, DeliveryStatus | None]] = {
    "processed": ("processed", None),
    "deferred": ("deferred", None),
    "delivered": ("delivered", DeliveryStatus.DELIVERED),
    "bounce": ("bounced", DeliveryStatus.BOUNCED),
    "dropped": ("dropped", DeliveryStatus.FAILED),
    "open": ("opened", None),
    "click": ("clicked", None),
    "spamreport": ("spam_reported", None),
    "unsubscribe": ("unsubscribed", None),
    "group_unsubscribe": ("unsubscribed", None),
}


_FAILURES = (DeliveryStatus.BOUNCED, DeliveryStatus.FAILED)


def _public_key(setting: str) -> Any:
    key = provider_setting(setting, "")
    if not key:
        raise SignatureError(f"{setting} is not configured.")
    loaded = _load_key(key)
    if loaded is None:
        raise SignatureError(f"{setting} is not a valid key.")
    return loaded


@functools.lru_cache(maxsize=8)
def _load_key(key: str) -> Any:
    """The parsed key, kept per key text (a changed setting is a new entry) instead of parsing
    the PEM for every callback (~10 µs; the signature check itself is ~110 µs)."""
    try:
        return EventWebhook().convert_public_key_to_ecdsa(key)
    except (ValueError, UnsupportedAlgorithm):
        return None


class SendGridWebhookView(ProviderWebhookView):
    provider = "sendgrid"
    public_key_setting: ClassVar[str] = "SENDGRID_WEBHOOK_PUBLIC_KEY"

    def verify_signature(self, request: HttpRequest) -> None:
        signature = request.headers.get(EventWebhookHeader.SIGNATURE, "")
        timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP, "")
        if not signature or not timestamp:
            raise SignatureError("Missing signature headers.")
        try:
            age = abs(time.time() - int(timestamp))
        except ValueError as exc:
            raise SignatureError("Bad timestamp.") from exc
        if age > settings.PROVIDER_WEBHOOK_MAX_AGE_SECONDS:
            raise SignatureError("Stale timestamp.")
        try:
            payload = request.body.decode("utf-8")
            valid = EventWebhook().verify_signature(payload, signature, timestamp,
                                                    _public_key(self.public_key_setting))
        except (UnicodeDecodeError, binascii.Error, ValueError) as exc:
            raise SignatureError("Malformed signature.") from exc
        if not valid:
            raise SignatureError("Signature does not match.")

    def parse_events(self, request: HttpRequest) -> list[ProviderEvent]:
        try:
            items = json.loads(request.body)
        except ValueError as exc:
            raise PayloadError("Body is not JSON.") from exc
        if not isinstance(items, list):
            raise PayloadError("Expected a JSON array of events.")
        events = []
        for item in items:
            if not isinstance(item, dict) or item.get("event") not in EVENT_MAP:
                continue
            name, status = EVENT_MAP[item["event"]]
            try:
                occurred = datetime.fromtimestamp(int(item.get("timestamp", 0)), tz=UTC)
            except (TypeError, ValueError, OverflowError):
                occurred = datetime.now(tz=UTC)
            sg_message_id = str(item.get("sg_message_id", ""))
            error_message = str(item.get("reason") or item.get("response") or "")[:2000]
            events.append(
                ProviderEvent(
                    provider=self.provider,
                    event=name,
                    status=status,
                    occurred_at=occurred,
                    delivery_id=str(item.get(DELIVERY_ARG, "")),
                    request_id=str(item.get(REQUEST_ARG, ""))[:64],
                    # X-Message-Id is the part of sg_message_id before the first dot.
                    provider_message_id=sg_message_id.split(".", 1)[0],
                    provider_event_id=str(item.get("sg_event_id", ""))[:255],
                    error_code=str(item.get("status", ""))[:100] if status else "",
                    error_message=error_message if status in _FAILURES else "",
                    detail={k: item[k] for k in ("type", "url", "useragent") if k in item},
                )
            )
        return events


class SendGridTestModeWebhookView(SendGridWebhookView):
    """Event Webhook of the test-mode sandbox: TEST_MODE_SENDGRID_WEBHOOK_PUBLIC_KEY, test
    deliveries only."""

    public_key_setting = "TEST_MODE_SENDGRID_WEBHOOK_PUBLIC_KEY"
    test_only = True


urlpatterns = [
    path("webhooks/sendgrid", SendGridWebhookView.as_view(), name="webhook-sendgrid"),
    # Receipts of test-mode sends (the sandbox test keys use): test deliveries only.
    path("webhooks/test/sendgrid", SendGridTestModeWebhookView.as_view(),
         name="webhook-test-sendgrid"),
]
