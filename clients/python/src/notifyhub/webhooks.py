"""Verifying NotifyHub's webhooks (Standard Webhooks, https://www.standardwebhooks.com/).

Each request carries `webhook-id`, `webhook-timestamp` and `webhook-signature`
(`v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, several space-separated while a
secret is being rotated); the key is the base64 part of the endpoint's `whsec_…` secret.

    event = verify(request.body, request.headers, secret="whsec_…")

Pass the raw body exactly as received: re-encoded JSON does not verify."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ._base import to_object
from .errors import WebhookVerificationError

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
DEFAULT_TOLERANCE = 300  # seconds either side of now, against replays


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookVerificationError("The secret is not a valid whsec_ secret.") from exc


def sign(*, secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The `v1,…` signature NotifyHub puts on a message (for your own tests)."""
    payload = body.encode() if isinstance(body, str) else body
    digest = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + payload,
                      hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"The {name} header is missing.")


def verify(body: bytes | str, headers: Mapping[str, str], *, secret: str | Sequence[str],
           tolerance: int = DEFAULT_TOLERANCE, now: float | None = None) -> Any:
    """The webhook's JSON payload if its signature matches one of `secret` (one secret, or
    several during your own rotation) and its timestamp is within `tolerance` seconds of
    now; else WebhookVerificationError. Also deduplicate on `webhook-id` yourself: a message
    can be delivered more than once."""
    msg_id = _header(headers, "webhook-id")
    raw_timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature").split()
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number.") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old or too new (replay?).")
    secrets = [secret] if isinstance(secret, str) else list(secret)
    expected = {sign(secret=s, msg_id=msg_id, timestamp=timestamp, body=body) for s in secrets}
    if not any(hmac.compare_digest(given, wanted) for given in signatures for wanted in expected):
        raise WebhookVerificationError("No signature matches the secret.")
    try:
        return to_object(json.loads(body))
    except ValueError:
        raise WebhookVerificationError("The body is not JSON.") from None
