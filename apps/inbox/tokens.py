"""Recipient tokens for the inbox API and its stream (docs/inbox.md "Tokens").

A token is a JWT (HS256) signed with the client's inbox signing secret
(`Client.inbox_signing_secret`, encrypted at rest, shown once when it is generated). Claims:

    iss  the client's id (UUID)               aud  "notifyhub:inbox"
    sub  the recipient's id (the client's own id for them, `Recipient.external_id`)
    iat  issued at (seconds)                  exp  expiry (seconds), required

NotifyHub mints them (`POST /api/v1/recipients/{id}/inbox-token`); a client's backend can mint
the same token offline with its secret (clients/python `mint_inbox_token`, or any JWT
library). A token grants one recipient's inbox and preferences, and nothing else. Reading one
checks the signature with the secret of the client it names, the audience, the expiry, and
that it does not live longer than INBOX_TOKEN_MAX_TTL_SECONDS from now (an offline-minted token
cannot be made to last for ever); then the recipient must exist for that client."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.clients.models import Client
from apps.recipients.models import Recipient

ALGORITHM = "HS256"
AUDIENCE = "notifyhub:inbox"
# A secret is 43 URL-safe characters (32 random bytes), prefixed so it is recognisable.
SECRET_START = "nhis_"  # noqa: S105 (a prefix, not a secret)


class InvalidInboxToken(Exception):
    """The token is missing, malformed, forged, expired, too long-lived, or names a client or
    recipient that does not exist (any more). `code` is the API's error code."""

    def __init__(self, message: str, code: str = "invalid_token") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class MintedToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class InboxPrincipal:
    """Whose inbox a request may read: the token's client and recipient."""

    client_id: str  # Client.id (UUID, str)
    recipient_pk: str  # Recipient.id (UUID, str)
    recipient_id: str  # Recipient.external_id (the client's id for them)
    locale: str = "en"
    expires_at: datetime | None = None


def generate_secret() -> str:
    return SECRET_START + secrets.token_urlsafe(32)


@transaction.atomic
def inbox_signing_secret_rotate(*, client: Client) -> str:
    """Gives the client a new inbox signing secret and returns it: the only time it is shown.
    Tokens signed with the previous secret stop working at once (they live an hour at most)."""
    secret = generate_secret()
    Client.objects.filter(pk=client.pk).update(inbox_signing_secret=secret)
    client.inbox_signing_secret = secret
    audit_record(action="client.inbox_secret_rotate", client=client, object_type="client",
                 object_id=client.pk, changes={"inbox_signing_secret": "rotated"})
    return secret


def _signing_secret(client: Client) -> str:
    """The client's secret, created (not shown) the first time NotifyHub mints for it."""
    if client.inbox_signing_secret:
        return client.inbox_signing_secret
    with transaction.atomic():
        current = (Client.objects.select_for_update().only("inbox_signing_secret")
                   .get(pk=client.pk).inbox_signing_secret)
        if not current:
            current = generate_secret()
            Client.objects.filter(pk=client.pk).update(inbox_signing_secret=current)
    client.inbox_signing_secret = current
    return current


def encode_inbox_token(*, secret: str, client_id: str, recipient_id: str, expires_at: datetime,
                       issued_at: datetime) -> str:
    """The token's bytes: what NotifyHub and an offline minter both produce."""
    claims = {"iss": str(client_id), "sub": str(recipient_id), "aud": AUDIENCE,
              "iat": int(issued_at.timestamp()), "exp": int(expires_at.timestamp())}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def mint_inbox_token(client: Client, recipient: Recipient, ttl: timedelta | None = None,
                     ) -> MintedToken:
    """A token for this recipient's inbox, valid `ttl` (INBOX_TOKEN_TTL_SECONDS, 1 h, by
    default; never more than INBOX_TOKEN_MAX_TTL_SECONDS)."""
    if recipient.client_id != client.pk:
        raise ValueError("The recipient belongs to another client.")
    ttl = ttl or timedelta(seconds=settings.INBOX_TOKEN_TTL_SECONDS)
    ttl = min(ttl, timedelta(seconds=settings.INBOX_TOKEN_MAX_TTL_SECONDS))
    now = timezone.now().replace(microsecond=0)
    expires_at = now + ttl
    token = encode_inbox_token(secret=_signing_secret(client), client_id=str(client.pk),
                               recipient_id=recipient.external_id, expires_at=expires_at,
                               issued_at=now)
    return MintedToken(token=token, expires_at=expires_at)


def _unverified_issuer(token: str) -> str:
    try:
        header = jwt.get_unverified_header(token)
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise InvalidInboxToken("The token is not a valid JWT.") from exc
    if header.get("alg") != ALGORITHM:
        raise InvalidInboxToken(f"The token must be signed with {ALGORITHM}.")
    issuer = claims.get("iss")
    try:
        return str(uuid.UUID(str(issuer)))
    except ValueError as exc:
        raise InvalidInboxToken("The token's issuer (iss) is not a client id.") from exc


def read_inbox_token(token: str) -> InboxPrincipal:
    """The principal a token grants; raises InvalidInboxToken (→ 401) for anything else.
    One query (the recipient with its client's secret)."""
    if not token or len(token) > 4096:
        raise InvalidInboxToken("A recipient token is required.", code="not_authenticated")
    client_id = _unverified_issuer(token)
    try:
        claims: dict[str, Any] = jwt.decode(
            token, options={"verify_signature": False, "require": ["exp", "sub", "iss", "aud"]},
            audience=AUDIENCE, algorithms=[ALGORITHM])
    except jwt.ExpiredSignatureError as exc:
        raise InvalidInboxToken("The token has expired.", code="token_expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidInboxToken(f"The token is invalid: {exc}.") from exc
    external_id = str(claims["sub"])
    recipient = (Recipient.objects.select_related("client")
                 .only("id", "client_id", "external_id", "locale", "client__id",
                       "client__is_active", "client__inbox_signing_secret")
                 .filter(client_id=client_id, external_id=external_id).first())
    secret = recipient.client.inbox_signing_secret if recipient is not None else ""
    if recipient is None or not secret or not recipient.client.is_active:
        # Same answer as a bad signature: a token says nothing about who exists.
        raise InvalidInboxToken("The token's signature does not verify.")
    try:
        jwt.decode(token, secret, algorithms=[ALGORITHM], audience=AUDIENCE,
                   issuer=client_id, options={"require": ["exp", "sub", "iss", "aud"]})
    except jwt.ExpiredSignatureError as exc:
        raise InvalidInboxToken("The token has expired.", code="token_expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidInboxToken("The token's signature does not verify.") from exc
    expires_at = datetime.fromtimestamp(int(claims["exp"]), tz=UTC)
    longest = timezone.now() + timedelta(seconds=settings.INBOX_TOKEN_MAX_TTL_SECONDS + 60)
    if expires_at > longest:
        raise InvalidInboxToken(
            f"The token lives too long: at most {settings.INBOX_TOKEN_MAX_TTL_SECONDS} s.",
            code="token_lifetime_too_long")
    return InboxPrincipal(client_id=client_id, recipient_pk=str(recipient.pk),
                          recipient_id=recipient.external_id, locale=recipient.locale or "en",
                          expires_at=expires_at)
