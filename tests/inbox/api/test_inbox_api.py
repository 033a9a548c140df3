"""The inbox API as a browser or app uses it, with a recipient token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.clients.services import api_key_create
from apps.inbox.live import channel_name
from apps.inbox.models import InboxMessage
from apps.inbox.tokens import mint_inbox_token
from apps.notifications.models import DeliveryEvent
from apps.preferences.center import preference_center_url
from apps.webhooks.models import WebhookMessage
from tests.factories import ClientFactory, RecipientFactory

from ..conftest import Listener, SendInApp, token_api

pytestmark = pytest.mark.django_db


# --- The token endpoint (API key) ------------------------------------------------------------

@pytest.mark.parametrize("scopes", [["send"], ["read"]])
def test_a_key_with_send_or_read_gets_a_token_and_the_stream_url(
        client_tenant: Any, ada: Any, scopes: list[str], settings: Any) -> None:
    settings.INBOX_STREAM_URL = "https://stream.example.com/api/v1/inbox/stream"
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Bearer " + api_key_create(
        client=client_tenant, name="k", scopes=scopes)[1])

    response = api.post("/api/v1/recipients/ada/inbox-token")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == {"token", "expires_at", "stream_url"}
    assert body["stream_url"] == "https://stream.example.com/api/v1/inbox/stream"
    inbox = APIClient()
    inbox.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    me = inbox.get("/api/v1/inbox/me").json()
    assert me.pop("preferences_url") == preference_center_url(client_tenant.pk, ada.pk)
    assert me == {"recipient_id": "ada", "locale": "en"}


def test_the_token_endpoint_needs_send_or_read_and_a_known_recipient(
        client_tenant: Any, ada: Any, api: Any) -> None:
    templates_only = APIClient()
    templates_only.credentials(HTTP_AUTHORIZATION="Bearer " + api_key_create(
        client=client_tenant, name="t", scopes=["templates"])[1])

    assert templates_only.post("/api/v1/recipients/ada/inbox-token").status_code == 403
    missing = api.post("/api/v1/recipients/nobody/inbox-token")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


# --- Reading ----------------------------------------------------------------------------------

def test_messages_are_listed_newest_first_in_pages(client_tenant: Any, ada: Any,
                                                   send_in_app: SendInApp) -> None:
    for n in range(5):
        send_in_app("ada", name=f"N{n}")
    inbox = token_api(client_tenant, ada)

    first = inbox.get("/api/v1/inbox/messages", {"page_size": 2}).json()
    second = APIClient().get(first["next"] + "&token=" + mint_inbox_token(
        client_tenant, ada).token).json()
    rest = inbox.get(second["next"]).json()

    titles = [m["title"] for page in (first, second, rest) for m in page["results"]]
    assert titles == [f"Welcome, N{n}" for n in (4, 3, 2, 1, 0)]
    assert rest["next"] is None
    assert "token=" not in first["next"]  # a credential is never echoed into a link
    item = first["results"][0]
    assert set(item) == {"id", "seq", "delivery_id", "category", "title", "body", "action_url",
                         "data", "created_at", "seen_at", "read_at", "archived_at", "expires_at"}
    assert item["seq"] == 5 and item["read_at"] is None


def test_status_filters_and_counts(client_tenant: Any, ada: Any, send_in_app: SendInApp) -> None:
    for _ in range(3):
        send_in_app("ada")
    inbox = token_api(client_tenant, ada)
    newest, middle, oldest = (m["id"] for m in inbox.get("/api/v1/inbox/messages").json()["results"])

    inbox.post(f"/api/v1/inbox/messages/{newest}/read")
    inbox.post(f"/api/v1/inbox/messages/{middle}/seen")
    inbox.post(f"/api/v1/inbox/messages/{oldest}/archive")

    def ids(status: str) -> list[str]:
        return [m["id"] for m in inbox.get("/api/v1/inbox/messages", {"status": status}).json()["results"]]

    assert ids("all") == [newest, middle]
    assert ids("unread") == [middle]
    assert ids("unseen") == []
    assert inbox.get("/api/v1/inbox/counts").json() == {"unread": 1, "unseen": 0, "total": 2}


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "archived"}, "status"), ({"cursor": "abc"}, "cursor"),
    ({"cursor": "-1"}, "cursor"), ({"page_size": "0"}, "page_size")])
def test_bad_list_parameters_are_400_naming_the_field(client_tenant: Any, ada: Any,
                                                      params: dict[str, str], field: str) -> None:
    response = token_api(client_tenant, ada).get("/api/v1/inbox/messages", params)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_the_token_works_as_a_query_parameter(client_tenant: Any, ada: Any) -> None:
    token = mint_inbox_token(client_tenant, ada).token
    assert APIClient().get("/api/v1/inbox/counts", {"token": token}).json() == {
        "unread": 0, "unseen": 0, "total": 0}


# --- Engagement -------------------------------------------------------------------------------

def test_read_records_seen_and_read_on_the_timeline_and_as_webhooks(
        api: Any, client_tenant: Any, ada: Any, send_in_app: SendInApp) -> None:
    assert api.post("/api/v1/webhooks", {"url": "https://hooks.example.com/n"},
                    format="json").status_code == 201
    send_in_app("ada")
    message = InboxMessage.objects.get()
    inbox = token_api(client_tenant, ada)

    first = inbox.post(f"/api/v1/inbox/messages/{message.id}/read")
    again = inbox.post(f"/api/v1/inbox/messages/{message.id}/read")

    assert first.status_code == 200
    assert first.json() == {"changed": 1, "counts": {"unread": 0, "unseen": 0, "total": 1}}
    assert again.json()["changed"] == 0  # idempotent: nothing recorded twice
    timeline = list(DeliveryEvent.objects.filter(delivery_id=message.delivery_id)
                    .values_list("event", "status", "provider"))
    assert timeline[-2:] == [("seen", "delivered", "in_app"), ("read", "delivered", "in_app")]
    hooks = sorted(WebhookMessage.objects.filter(delivery_id=message.delivery_id)
                   .values_list("event_type", flat=True))
    assert "delivery.read" in hooks and "delivery.seen" in hooks
    detail = api.get(f"/api/v1/notifications/{message.delivery.notification_id}").json()
    events = [e["event"] for e in detail["deliveries"][0]["timeline"]]
    assert events[-2:] == ["seen", "read"]


def test_unread_archive_and_read_all(client_tenant: Any, ada: Any, send_in_app: SendInApp) -> None:
    for _ in range(3):
        send_in_app("ada")
    inbox = token_api(client_tenant, ada)
    first = InboxMessage.objects.order_by("seq").first()
    assert first is not None

    read_all = inbox.post("/api/v1/inbox/messages/read-all").json()
    unread = inbox.post(f"/api/v1/inbox/messages/{first.id}/unread").json()
    archived = inbox.post(f"/api/v1/inbox/messages/{first.id}/archive").json()

    assert read_all == {"changed": 3, "counts": {"unread": 0, "unseen": 0, "total": 3}}
    assert unread == {"changed": 1, "counts": {"unread": 1, "unseen": 0, "total": 3}}
    assert archived["counts"] == {"unread": 0, "unseen": 0, "total": 2}
    assert DeliveryEvent.objects.filter(delivery_id=first.delivery_id, event="archived").count() == 1


def test_each_change_publishes_the_counts(client_tenant: Any, ada: Any, send_in_app: SendInApp,
                                          listener: Listener,
                                          django_capture_on_commit_callbacks: Any) -> None:
    send_in_app("ada")
    message = InboxMessage.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        token_api(client_tenant, ada).post(f"/api/v1/inbox/messages/{message.id}/read")

    assert listener.events() == [(channel_name(ada.client_id, ada.id),
                                  {"type": "counts", "unread": 0, "unseen": 0, "total": 1})]


# --- Refusals ---------------------------------------------------------------------------------

def test_another_recipients_or_clients_message_is_404_and_unchanged(
        client_tenant: Any, ada: Any, send_in_app: SendInApp) -> None:
    send_in_app("ada")
    message = InboxMessage.objects.get()
    bo = RecipientFactory(client=client_tenant, external_id="bo")
    other = ClientFactory()
    ada_elsewhere = RecipientFactory(client=other, external_id="ada")

    for intruder in (token_api(client_tenant, bo), token_api(other, ada_elsewhere)):
        for action in ("read", "seen", "unread", "archive"):
            response = intruder.post(f"/api/v1/inbox/messages/{message.id}/{action}")
            assert response.status_code == 404, action
        assert intruder.get("/api/v1/inbox/messages").json()["results"] == []
        assert intruder.post("/api/v1/inbox/messages/read-all").json()["changed"] == 0
    message.refresh_from_db()
    assert (message.seen_at, message.read_at, message.archived_at) == (None, None, None)


@pytest.mark.parametrize("how", ["none", "api_key", "expired", "garbage", "basic"])
def test_without_a_valid_token_every_route_is_401(client_tenant: Any, ada: Any, api: Any,
                                                  how: str, settings: Any) -> None:
    caller = APIClient() if how != "api_key" else api
    if how == "expired":
        settings.INBOX_TOKEN_TTL_SECONDS = 1
        minted = mint_inbox_token(client_tenant, ada, ttl=timedelta(seconds=-61))
        caller.credentials(HTTP_AUTHORIZATION=f"Bearer {minted.token}")
    elif how == "garbage":
        caller.credentials(HTTP_AUTHORIZATION="Bearer not.a.token")
    elif how == "basic":
        caller.credentials(HTTP_AUTHORIZATION="Basic YWRhOnNlY3JldA==")
    message = "00000000-0000-4000-8000-000000000000"
    for method, path in [("get", "messages"), ("get", "counts"), ("get", "me"),
                         ("post", "messages/read-all"), ("post", f"messages/{message}/read")]:
        response = getattr(caller, method)(f"/api/v1/inbox/{path}")
        assert response.status_code == 401, (how, path, response.content)
        code = response.json()["error"]["code"]
        assert code == ("token_expired" if how == "expired" else code)


# --- CORS -------------------------------------------------------------------------------------

def test_preflights_are_answered_for_origins_some_client_allows(client_tenant: Any) -> None:
    type(client_tenant).objects.filter(pk=client_tenant.pk).update(
        inbox_allowed_origins=["https://app.example.com"])
    anonymous = APIClient()

    allowed = anonymous.options("/api/v1/inbox/messages", HTTP_ORIGIN="https://app.example.com",
                                HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
                                HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization")
    refused = anonymous.options("/api/v1/inbox/messages", HTTP_ORIGIN="https://evil.example",
                                HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")

    assert allowed.status_code == 204
    assert allowed["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Authorization" in allowed["Access-Control-Allow-Headers"]
    assert "Last-Event-ID" in allowed["Access-Control-Allow-Headers"]
    assert refused.status_code == 204 and "Access-Control-Allow-Origin" not in refused


def test_a_real_request_needs_an_origin_the_tokens_own_client_allows(
        client_tenant: Any, ada: Any, send_in_app: SendInApp) -> None:
    send_in_app("ada")
    message = InboxMessage.objects.get()
    type(client_tenant).objects.filter(pk=client_tenant.pk).update(
        inbox_allowed_origins=["https://app.example.com"])
    ClientFactory(inbox_allowed_origins=["https://other.example.com"])
    inbox = token_api(client_tenant, ada)

    ok = inbox.get("/api/v1/inbox/counts", HTTP_ORIGIN="https://app.example.com")
    foreign = inbox.post(f"/api/v1/inbox/messages/{message.id}/read",
                         HTTP_ORIGIN="https://other.example.com")
    server_side = inbox.get("/api/v1/inbox/counts")  # no Origin: not a browser

    assert ok.status_code == 200
    assert ok["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Origin" in ok["Vary"]
    assert foreign.status_code == 403
    assert foreign.json()["error"]["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in foreign
    message.refresh_from_db()
    assert message.read_at is None  # refused before anything changed
    assert server_side.status_code == 200 and "Access-Control-Allow-Origin" not in server_side


def test_an_expired_tokens_401_is_readable_by_an_allowed_origin(client_tenant: Any,
                                                                ada: Any) -> None:
    type(client_tenant).objects.filter(pk=client_tenant.pk).update(
        inbox_allowed_origins=["http://localhost:8000"])
    expired = mint_inbox_token(client_tenant, ada, ttl=timedelta(seconds=-120)).token

    response = APIClient().get("/api/v1/inbox/counts", {"token": expired},
                               HTTP_ORIGIN="http://localhost:8000")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_expired"
    assert response["Access-Control-Allow-Origin"] == "http://localhost:8000"


def test_a_recipient_over_the_inbox_rate_is_throttled(client_tenant: Any, ada: Any,
                                                      settings: Any) -> None:
    settings.INBOX_THROTTLE_RATE = "3/min"
    other = RecipientFactory(client=client_tenant, external_id="bo")
    inbox, neighbour = token_api(client_tenant, ada), token_api(client_tenant, other)

    answers = [inbox.get("/api/v1/inbox/counts").status_code for _ in range(4)]

    assert answers == [200, 200, 200, 429]
    assert inbox.get("/api/v1/inbox/counts")["Retry-After"]
    assert neighbour.get("/api/v1/inbox/counts").status_code == 200  # per recipient


def test_a_page_costs_the_same_few_queries_whatever_its_size(client_tenant: Any, ada: Any,
                                                              send_in_app: SendInApp) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(3):
        send_in_app("ada")
    inbox = token_api(client_tenant, ada)
    with CaptureQueriesContext(connection) as small:
        inbox.get("/api/v1/inbox/messages")
    for _ in range(10):
        send_in_app("ada")
    with CaptureQueriesContext(connection) as large:
        assert len(inbox.get("/api/v1/inbox/messages").json()["results"]) == 13

    assert len(small) == len(large) <= 3  # the token's recipient, the page (no N+1)
