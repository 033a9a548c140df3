"""Recipient tokens: minted by NotifyHub or offline with the client's secret; forged,
expired, too long-lived or foreign tokens open nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.utils import timezone

from apps.audit.models import AuditLog
from apps.inbox.tokens import (
    AUDIENCE,
    InvalidInboxToken,
    encode_inbox_token,
    inbox_signing_secret_rotate,
    mint_inbox_token,
    read_inbox_token,
)
from tests.factories import ClientFactory, RecipientFactory

pytestmark = pytest.mark.django_db


def test_a_minted_token_names_the_client_and_recipient_and_lasts_an_hour(
        client_tenant: Any, ada: Any) -> None:
    minted = mint_inbox_token(client_tenant, ada)

    principal = read_inbox_token(minted.token)
    claims = jwt.decode(minted.token, options={"verify_signature": False})
    assert (principal.client_id, principal.recipient_pk, principal.recipient_id) == (
        str(client_tenant.id), str(ada.id), "ada")
    assert claims["iss"] == str(client_tenant.id) and claims["sub"] == "ada"
    assert claims["aud"] == AUDIENCE
    assert abs((minted.expires_at - timezone.now()).total_seconds() - 3600) < 5
    client_tenant.refresh_from_db()
    assert client_tenant.inbox_signing_secret.startswith("nhis_")  # created on first mint


def test_a_token_minted_offline_with_the_secret_is_accepted(client_tenant: Any, ada: Any) -> None:
    secret = inbox_signing_secret_rotate(client=client_tenant)
    now = timezone.now()
    # What a client's backend does with any JWT library.
    token = jwt.encode({"iss": str(client_tenant.id), "sub": "ada", "aud": "notifyhub:inbox",
                        "iat": int(now.timestamp()),
                        "exp": int((now + timedelta(minutes=10)).timestamp())},
                       secret, algorithm="HS256")

    assert read_inbox_token(token).recipient_pk == str(ada.id)
    assert AuditLog.objects.filter(action="client.inbox_secret_rotate").count() == 1


def _token(client: Any, recipient_id: str = "ada", secret: str | None = None,
           ttl: timedelta = timedelta(minutes=5), **claims: Any) -> str:
    now = timezone.now()
    payload = {"iss": str(client.id), "sub": recipient_id, "aud": AUDIENCE,
               "iat": int(now.timestamp()), "exp": int((now + ttl).timestamp()), **claims}
    return jwt.encode(payload, secret or client.inbox_signing_secret, algorithm="HS256")


@pytest.mark.parametrize("case", [
    "expired", "tampered", "wrong_secret", "other_clients_secret", "no_exp", "too_long",
    "wrong_audience", "none_alg", "unknown_recipient", "other_clients_recipient", "garbage",
    "not_a_client_id", "inactive_client"])
def test_bad_tokens_are_refused(client_tenant: Any, ada: Any, case: str) -> None:
    mint_inbox_token(client_tenant, ada)
    client_tenant.refresh_from_db()
    other = ClientFactory()
    RecipientFactory(client=other, external_id="bo")
    mint_inbox_token(other, other.recipients.get())
    other.refresh_from_db()
    good = _token(client_tenant)
    tokens = {
        "expired": _token(client_tenant, ttl=timedelta(seconds=-120)),
        "tampered": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
        "wrong_secret": _token(client_tenant, secret="nhis_not-the-secret-at-all-0000000000000"),
        "other_clients_secret": _token(client_tenant, secret=other.inbox_signing_secret),
        "no_exp": jwt.encode({"iss": str(client_tenant.id), "sub": "ada", "aud": AUDIENCE},
                             client_tenant.inbox_signing_secret, algorithm="HS256"),
        "too_long": _token(client_tenant, ttl=timedelta(days=30)),
        "wrong_audience": _token(client_tenant, aud="something-else"),
        "none_alg": jwt.encode({"iss": str(client_tenant.id), "sub": "ada", "aud": AUDIENCE,
                                "exp": int((timezone.now() + timedelta(minutes=5)).timestamp())},
                               None, algorithm="none"),
        "unknown_recipient": _token(client_tenant, recipient_id="nobody"),
        # Signed by the other client for a recipient id that only exists in ours.
        "other_clients_recipient": _token(other, recipient_id="ada"),
        "garbage": "not-a-jwt",
        "not_a_client_id": _token(client_tenant, iss="acme"),
        "inactive_client": good,
    }
    if case == "inactive_client":
        type(client_tenant).objects.filter(pk=client_tenant.pk).update(is_active=False)

    with pytest.raises(InvalidInboxToken) as refused:
        read_inbox_token(tokens[case])
    if case == "expired":
        assert refused.value.code == "token_expired"


def test_rotating_the_secret_invalidates_earlier_tokens(client_tenant: Any, ada: Any) -> None:
    old = mint_inbox_token(client_tenant, ada).token
    inbox_signing_secret_rotate(client=client_tenant)

    with pytest.raises(InvalidInboxToken):
        read_inbox_token(old)
    assert read_inbox_token(mint_inbox_token(client_tenant, ada).token).recipient_id == "ada"


def test_the_ttl_is_capped(client_tenant: Any, ada: Any, settings: Any) -> None:
    settings.INBOX_TOKEN_MAX_TTL_SECONDS = 600
    minted = mint_inbox_token(client_tenant, ada, ttl=timedelta(days=7))
    assert (minted.expires_at - timezone.now()) <= timedelta(seconds=600)


def test_the_encoder_is_what_offline_minting_uses(client_tenant: Any, ada: Any) -> None:
    secret = inbox_signing_secret_rotate(client=client_tenant)
    now = timezone.now()
    token = encode_inbox_token(secret=secret, client_id=str(client_tenant.id),
                               recipient_id="ada", expires_at=now + timedelta(minutes=1),
                               issued_at=now)
    assert read_inbox_token(token).recipient_id == "ada"
