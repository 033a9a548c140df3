"""Recipient tokens for NotifyHub's in-app inbox, minted offline (NotifyHub's docs/inbox.md).

Your backend signs a short-lived token for one of its recipients with the client's inbox
signing secret (`nhis_…`, shown once in the admin when rotated) and gives it to that
recipient's browser or app, which reads the inbox API and its live stream with it. No call to
NotifyHub is needed (`client.recipients.inbox_token(id)` asks NotifyHub for one instead).

    from notifyhub import mint_inbox_token
    token = mint_inbox_token(secret, client_id="3f0c…", recipient_id="user-123")

The token is a JWT (HS256) with claims `iss` (client id), `sub` (recipient id), `aud`
(`notifyhub:inbox`), `iat` and `exp`; made here with the standard library only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

AUDIENCE = "notifyhub:inbox"
DEFAULT_TTL_SECONDS = 3600
# NotifyHub refuses tokens that live longer than its INBOX_TOKEN_MAX_TTL_SECONDS (default 1 day).
MAX_TTL_SECONDS = 86400


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: dict[str, object]) -> str:
    return _b64(json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


def mint_inbox_token(secret: str, *, client_id: str, recipient_id: str,
                     ttl: int = DEFAULT_TTL_SECONDS, now: float | None = None) -> str:
    """A token for `recipient_id`'s inbox (your own id for them), valid `ttl` seconds (1 h by
    default, at most a day)."""
    if not secret:
        raise ValueError("The inbox signing secret is empty.")
    if not 0 < ttl <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl must be between 1 and {MAX_TTL_SECONDS} seconds.")
    if not client_id or not recipient_id:
        raise ValueError("client_id and recipient_id are required.")
    issued = int(now if now is not None else time.time())
    header = _segment({"alg": "HS256", "typ": "JWT"})
    claims = _segment({"iss": str(client_id), "sub": str(recipient_id), "aud": AUDIENCE,
                       "iat": issued, "exp": issued + int(ttl)})
    signing_input = f"{header}.{claims}".encode("ascii")
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{claims}.{_b64(signature)}"
