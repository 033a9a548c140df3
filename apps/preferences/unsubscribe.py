"""Login-free unsubscribe links (CAN-SPAM, RFC 2369 List-Unsubscribe, RFC 8058 one-click).

A link carries a token signed with SECRET_KEY (django.core.signing, own salt, no expiry: a
link in a years-old email must still work; rotate keys with SECRET_KEY_FALLBACKS) naming the
recipient, the category and the channel the message came through. GET shows a confirmation
page (link scanners fetch URLs, so GET changes nothing); POST opts out — the category, or the
whole channel when the token names no category.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.urls import reverse

from apps.recipients.models import Recipient

from .selectors import critical_categories

SALT = "notifyhub.preferences.unsubscribe"


class BadToken(Exception):
    pass


@dataclass(frozen=True)
class UnsubscribeTarget:
    recipient_id: str
    category: str  # "" = the whole channel
    channel: str


def unsubscribe_token(*, recipient: Recipient, category: str | None, channel: str = "email") -> str:
    category = (category or "").lower()
    if category and category in critical_categories():
        raise ValueError(f"'{category}' is a critical category: it has no unsubscribe link.")
    # Not compressed: zlib never shortens a payload this small (signing keeps the shorter).
    return _sign({"r": str(recipient.pk), "k": category, "c": channel})


def _sign(obj: dict[str, str]) -> str:
    """`signing.dumps(obj, salt=SALT)`, the same token, for a fraction of its cost (one per
    email sent): the HMAC key Django derives from SALT and SECRET_KEY on every call is
    derived once per process (and per key)."""
    value = f"{signing.b64_encode(json.dumps(obj, separators=(',', ':')).encode('latin-1')).decode()}" \
            f":{signing.b62_encode(int(time.time()))}"
    mac = _mac(settings.SECRET_KEY).copy()
    mac.update(value.encode())
    return f"{value}:{signing.b64_encode(mac.digest()).decode()}"


@functools.lru_cache(maxsize=4)
def _mac(secret: str) -> hmac.HMAC:
    """Django's salted_hmac(SALT + "signer", …, secret, algorithm="sha256") before the
    message: what signing.Signer(salt=SALT).signature computes."""
    key = hashlib.sha256(f"{SALT}signer{secret}".encode()).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def unsubscribe_url(*, recipient: Recipient, category: str | None, channel: str = "email") -> str:
    """The absolute, signed, login-free unsubscribe URL for a message of `category` sent to
    `recipient` on `channel` (category "" or None: the whole channel)."""
    token = unsubscribe_token(recipient=recipient, category=category, channel=channel)
    prefix, suffix = _unsubscribe_path()
    return f"{settings.PUBLIC_BASE_URL}{prefix}{token}{suffix}"


@functools.cache
def _unsubscribe_path() -> tuple[str, str]:
    """The unsubscribe route around its token, reversed once per process (reverse() costs
    more than the signing, for every email sent). A token is URL-safe as signed."""
    marker = "TOKEN0MARKER"
    path = reverse("preferences-unsubscribe", args=[marker])
    prefix, _, suffix = path.partition(marker)
    return prefix, suffix


def list_unsubscribe_headers(*, recipient: Recipient, category: str | None) -> dict[str, str]:
    """Headers for an outgoing email: List-Unsubscribe with the HTTPS link and RFC 8058
    one-click. Empty for a critical category (nothing to unsubscribe from)."""
    if category and category.lower() in critical_categories():
        return {}
    url = unsubscribe_url(recipient=recipient, category=category, channel="email")
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def unsubscribe_target(token: str) -> UnsubscribeTarget:
    """What a token unsubscribes from; BadToken when it was not signed by us."""
    try:
        data = signing.loads(token, salt=SALT)
    except signing.BadSignature as exc:
        raise BadToken("This unsubscribe link is not valid.") from exc
    if not isinstance(data, dict) or not isinstance(data.get("r"), str):
        raise BadToken("This unsubscribe link is not valid.")
    return UnsubscribeTarget(recipient_id=data["r"], category=str(data.get("k") or ""),
                             channel=str(data.get("c") or "email"))
