"""The client's side of the in-app inbox: a token from NotifyHub, or minted offline with the
client's signing secret and no dependency beyond the standard library."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from django.test import Client as DjangoClient

from apps.inbox.tokens import InvalidInboxToken, inbox_signing_secret_rotate, read_inbox_token
from tests.factories import ClientFactory, RecipientFactory, api_key_for
from tests.support.pyclient import load_client

nh = load_client()

pytestmark = pytest.mark.django_db


def test_an_offline_token_is_accepted_by_notifyhub() -> None:
    tenant = ClientFactory()
    RecipientFactory(client=tenant, external_id="user-123")
    secret = inbox_signing_secret_rotate(client=tenant)

    token = nh.mint_inbox_token(secret, client_id=str(tenant.id), recipient_id="user-123",
                                ttl=600)

    principal = read_inbox_token(token)
    assert (principal.client_id, principal.recipient_id) == (str(tenant.id), "user-123")


def test_an_offline_token_with_a_wrong_secret_or_expired_is_refused() -> None:
    tenant = ClientFactory()
    RecipientFactory(client=tenant, external_id="user-123")
    secret = inbox_signing_secret_rotate(client=tenant)

    forged = nh.mint_inbox_token("nhis_wrong", client_id=str(tenant.id), recipient_id="user-123")
    expired = nh.mint_inbox_token(secret, client_id=str(tenant.id), recipient_id="user-123",
                                  ttl=60, now=time.time() - 3600)
    for token in (forged, expired):
        with pytest.raises(InvalidInboxToken):
            read_inbox_token(token)


@pytest.mark.parametrize("kwargs", [{"ttl": 0}, {"ttl": 86401}, {"recipient_id": ""}])
def test_minting_refuses_what_notifyhub_would(kwargs: dict[str, Any]) -> None:
    args = {"client_id": "c", "recipient_id": "r", **kwargs}
    with pytest.raises(ValueError):
        nh.mint_inbox_token("nhis_x", **args)


def test_recipients_inbox_token_gets_a_token_notifyhub_accepts(settings: Any) -> None:
    """Through NotifyHub itself: each request the client makes is served by Django's test
    client in this process (in the test's transaction), not by a mock."""
    tenant = ClientFactory()
    RecipientFactory(client=tenant, external_id="user 1")
    django = DjangoClient()

    def serve(request: httpx.Request) -> httpx.Response:
        answer = django.generic(request.method, request.url.raw_path.decode(),
                                request.content, request.headers.get("content-type", ""),
                                HTTP_AUTHORIZATION=request.headers["authorization"])
        return httpx.Response(answer.status_code, content=answer.content,
                              headers={"content-type": answer["Content-Type"]})

    http = httpx.Client(transport=httpx.MockTransport(serve))

    with nh.Client(api_key=api_key_for(tenant), base_url="http://notifyhub.test",
                   http_client=http) as client:
        answer = client.recipients.inbox_token("user 1")
        with pytest.raises(nh.NotFoundError):
            client.recipients.inbox_token("nobody")

    assert answer.stream_url == settings.INBOX_STREAM_URL
    assert read_inbox_token(answer.token).recipient_id == "user 1"
