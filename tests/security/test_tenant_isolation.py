"""Tenants never see or touch each other's data.

The routes come from the URL resolver (everything under /api/v1/). Every route whose parameters
this module knows how to fill (FILLERS) is called by tenant B with tenant A's ids, for every
HTTP method its view has: the answer is 404 `not_found` — the same as for an id that does not
exist — and none of A's rows changed. The same call with B's own ids must then work (not 400,
404 or 500), which proves the body and ids were right and the 404 was about ownership. A route
that cannot be filled automatically must be listed in NOT_AUTO_FILLED with the test that covers
it, so a new route cannot be forgotten. Every GET route B can call (its own ids filled in, A's
ids in the query string) must answer without any of A's ids, keys or addresses in the body.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AuditLog
from apps.inbox.models import InboxMessage
from apps.inbox.tokens import encode_inbox_token, mint_inbox_token
from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Delivery, Notification
from apps.notifications.services import notification_send
from apps.recipients.models import Recipient
from apps.webhooks.models import WebhookMessage

from .support import Route, World, api_routes, two_worlds, unchanged

ROUTES = api_routes()
UNKNOWN_UUID = "00000000-0000-4000-8000-000000000404"

# Parameter name → ways to name the owner's object (ids and keys are both tried).
FILLERS: dict[str, list[Callable[[World], Any]]] = {
    "notification_id": [lambda w: w.notification_id],
    "template_ref": [lambda w: w.template_key, lambda w: w.template_id],
    "number": [lambda w: 1],
    "recipient": [lambda w: w.recipient],
    "external_id": [lambda w: w.recipient],
    "channel": [lambda w: "email"],
    "segment_ref": [lambda w: w.segment_key, lambda w: w.segment_id],
    "schedule_id": [lambda w: w.schedule_id],
    "endpoint_id": [lambda w: w.endpoint_id],
}
# What names no object at all, per parameter (for the "same answer as unknown" check).
UNKNOWN: dict[str, Any] = {
    "notification_id": UNKNOWN_UUID, "template_ref": "no_such_template", "number": 1,
    "recipient": "no_such_user", "external_id": "no_such_user", "channel": "email",
    "segment_ref": "no-such-segment", "schedule_id": UNKNOWN_UUID, "endpoint_id": UNKNOWN_UUID,
}

# Routes the walk cannot fill, and what covers them instead.
NOT_AUTO_FILLED: dict[str, str] = {
    "preferences-unsubscribe": "public page: the signed token is the credential, it names one "
                               "recipient (tests/preferences/test_unsubscribe.py; forged token "
                               "below)",
    **{f"inbox-message-{action}": "a recipient token, not an API key, names the inbox: "
                                  "test_inbox_routes_open_only_the_tokens_own_inbox"
       for action in ("read", "seen", "unread", "archive")},
}
# Routes without parameters that have no GET (their bodies are covered elsewhere).
NO_LIST: dict[str, str] = {
    "notifications-bulk": "send; test_bodies_naming_another_clients_objects_are_refused and "
                          "test_mass_assignment",
    "retry-failed": "test_retry_failed_never_redrives_another_clients_dead_letters",
    "webhook-sendgrid": "provider callback: signed by the provider, no API key",
    "webhook-twilio": "provider callback: signed by the provider, no API key",
    "webhook-whatsapp": "provider callback: signed by the provider, no API key",
    "webhook-twilio-inbound": "provider callback (STOP/START): signed by Twilio, no API key",
    "webhook-test-sendgrid": "test-mode provider callback: signed by the sandbox, no API key",
    "webhook-test-twilio": "test-mode provider callback: signed by the sandbox, no API key",
    "webhook-test-whatsapp": "test-mode provider callback: signed by the sandbox, no API key",
    "webhook-vonage": "provider callback: signed by the provider, no API key",
    "webhook-vonage-inbound": "provider callback (STOP/START): signed by Vonage, no API key",
    "webhook-test-vonage": "test-mode provider callback: signed by the sandbox, no API key",
    "inbox-read-all": "recipient token: test_inbox_routes_open_only_the_tokens_own_inbox",
}
# (route, method) that legitimately do not answer 404 for another client's id.
NOT_404: dict[tuple[str, str], str] = {
    ("recipient-detail", "PUT"): "an upsert: creates the caller's own recipient with that id "
                                 "(test_put_recipient_with_another_clients_id_creates_your_own)",
}

# Bodies that are valid for the caller, so that only the object's owner decides the answer.
Body = Callable[[World, World], Any]
BODIES: dict[tuple[str, str], Body] = {
    ("template-detail", "PUT"): lambda owner, caller: {"name": "Renamed"},
    ("template-versions", "POST"): lambda owner, caller: {
        "subject": "New {{ name }}", "text_body": "New", "sms_body": "New", "publish": False},
    ("template-preview", "POST"): lambda owner, caller: {"variables": {"name": "Bo"}},
    ("preferences-detail", "PUT"): lambda owner, caller: {"categories": {"news": False}},
    ("preferences-channel", "PATCH"): lambda owner, caller: {"enabled": False},
    ("preferences-opt-out", "POST"): lambda owner, caller: {"channel": "sms"},
    ("preferences-opt-in", "POST"): lambda owner, caller: {"category": "marketing"},
    ("recipient-detail", "PUT"): lambda owner, caller: {"locale": "fr"},
    ("recipient-devices", "POST"): lambda owner, caller: {"token": "new-token",
                                                          "platform": "ios"},
    ("recipient-devices", "DELETE"): lambda owner, caller: {"token": owner.device_token},
    ("segment-detail", "PUT"): lambda owner, caller: {"name": "Renamed"},
    ("segment-send", "POST"): lambda owner, caller: {
        "template_id": caller.template_key, "variables": {"name": "Bo"}, "channels": ["email"]},
    ("schedule-detail", "PUT"): lambda owner, caller: {"name": "Renamed"},
    ("webhook-endpoint-replay", "POST"): lambda owner, caller: {
        "since": "2000-01-01T00:00:00Z"},
}


def _fillable(route: Route) -> bool:
    return route.is_api_view and bool(route.params) and all(p in FILLERS for p in route.params)


OBJECT_ROUTES = [r for r in ROUTES if _fillable(r)]


def _values(route: Route, world: World, variant: int = 0) -> dict[str, Any]:
    return {p: FILLERS[p][min(variant, len(FILLERS[p]) - 1)](world) for p in route.params}


def _variants(route: Route) -> int:
    return max(len(FILLERS[p]) for p in route.params)


def _call(caller: World, route: Route, method: str, values: dict[str, Any], body: Any) -> Any:
    return getattr(caller.api, method.lower())(route.url(values), body, format="json")


def _body(route: Route, method: str, owner: World, caller: World) -> Any:
    make = BODIES.get((route.name, method))
    return make(owner, caller) if make else None


def _answer(response: Any) -> str:
    return f"{response.status_code} {response.content[:300]!r}"


# --- Completeness -----------------------------------------------------------------------------

def test_every_api_route_is_tested_or_listed() -> None:
    """A new route under /api/v1/ fails here until it is auto-filled (FILLERS) or listed."""
    forgotten = []
    for route in ROUTES:
        if route.params:
            if not _fillable(route) and route.name not in NOT_AUTO_FILLED:
                forgotten.append(f"{route.template} (params {route.params}): add a FILLERS entry "
                                 "or list it in NOT_AUTO_FILLED")
        elif not (route.is_api_view and "GET" in route.methods) and route.name not in NO_LIST:
            forgotten.append(f"{route.template}: no GET to scan; list it in NO_LIST")
    assert forgotten == []
    names = {r.name for r in ROUTES}
    stale = (set(NOT_AUTO_FILLED) | set(NO_LIST) | {n for n, _ in NOT_404}
             | {n for n, _ in BODIES}) - names
    assert stale == set(), "tables name routes that no longer exist"
    assert len(OBJECT_ROUTES) >= 20  # the walk found the object routes


# --- Object routes: 404 for another client's id -----------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("route", OBJECT_ROUTES, ids=str)
def test_another_clients_id_is_404_for_every_method(route: Route) -> None:
    alpha, beta = two_worlds()
    for method in route.methods:
        if (route.name, method) in NOT_404:
            continue
        body = _body(route, method, alpha, beta)
        for variant in range(_variants(route)):
            alpha_changes = unchanged(alpha.client)
            response = _call(beta, route, method, _values(route, alpha, variant), body)
            where = f"{method} {route.url(_values(route, alpha, variant))}"
            assert response.status_code == 404, f"{where} by another client: {_answer(response)}"
            assert response.json()["error"]["code"] == "not_found", where
            assert alpha_changes() == [], f"{where} by another client changed the owner's rows"
        unknown = _call(beta, route, method, {p: UNKNOWN[p] for p in route.params}, body)
        assert unknown.status_code == 404, f"{method} {route.name} unknown id: {_answer(unknown)}"

    # The same calls with the caller's own ids work: the bodies were valid and the ids right,
    # so the 404s above were about ownership. DELETE last (it removes what the others use).
    for method in sorted(route.methods, key=lambda m: m == "DELETE"):
        values = _values(route, beta)
        response = _call(beta, route, method, values, _body(route, method, beta, beta))
        assert response.status_code not in (400, 404) and response.status_code < 500, (
            f"{method} {route.url(values)} by its owner: {_answer(response)}")


@pytest.mark.django_db
def test_put_recipient_with_another_clients_id_creates_your_own() -> None:
    alpha, beta = two_worlds()
    alpha_changes = unchanged(alpha.client)

    response = beta.api.put(f"/api/v1/recipients/{alpha.recipient}", {"locale": "fr"},
                            format="json")

    assert response.status_code == 201
    assert response.json()["email"] == ""  # not alpha's address
    assert alpha_changes() == []
    assert Recipient.objects.filter(external_id=alpha.recipient).count() == 2
    assert Recipient.objects.get(client=beta.client, external_id=alpha.recipient).locale == "fr"


@pytest.mark.django_db
def test_a_forged_unsubscribe_token_changes_nothing(client: Any) -> None:
    alpha, _ = two_worlds()
    alpha_changes = unchanged(alpha.client)
    forged = f"{alpha.recipient}.email.marketing.forged"

    assert client.get(f"/api/v1/preferences/unsubscribe/{forged}").status_code in (400, 404)
    assert client.post(f"/api/v1/preferences/unsubscribe/{forged}").status_code in (400, 404)
    assert alpha_changes() == []


# --- Lists and reads: nothing of the other client's -----------------------------------------

def _leaks(body: bytes, markers: set[str]) -> list[str]:
    text = body.decode(errors="replace")
    return sorted(m for m in markers if m and m in text)


@pytest.mark.django_db
def test_no_answer_to_a_get_contains_another_clients_data() -> None:
    """Every GET route, with the caller's own ids, and query strings naming the other client's
    objects (filters must not widen the scope)."""
    alpha, beta = two_worlds()
    markers = alpha.markers()
    query = {"recipient": alpha.recipient, "notification_id": alpha.notification_id,
             "message_id": alpha.message_id, "client": str(alpha.client.id),
             "client_id": str(alpha.client.id), "name": alpha.prefix,
             "segment": alpha.segment_key, "template_id": alpha.template_key}
    checked = []
    for route in ROUTES:
        if not route.is_api_view or "GET" not in route.methods:
            continue
        if route.params and not _fillable(route):
            continue
        url = route.url(_values(route, beta)) if route.params else route.url({})
        for params in ({}, query):
            response = beta.api.get(url, params)
            assert response.status_code < 500, f"GET {url} {params}: {_answer(response)}"
            if response.status_code == 200:
                body = (b"".join(response.streaming_content) if response.streaming  # GDPR export
                        else response.content)
                assert _leaks(body, markers) == [], f"GET {url} {params}"
        checked.append(route.name)
    assert {"notifications", "templates", "template-search", "segments", "schedules",
            "webhook-endpoints", "audit-logs", "segment-recipients", "recipient-devices",
            "preferences-consent", "webhook-endpoint-attempts", "template-versions",
            "metrics-delivery-rates", "queue-status"} <= set(checked)


@pytest.mark.django_db
def test_lists_hold_exactly_the_callers_rows() -> None:
    _, beta = two_worlds()

    def ids(path: str, **params: Any) -> set[str]:
        body = beta.ok("get", path, params)
        return {str(item["id"]) for item in body["results"]}

    assert ids("notifications") == {beta.notification_id}
    assert ids("notifications", status="processing") == {beta.notification_id}
    assert ids("templates") == {beta.template_id}
    assert ids("templates/search", name="welcome") == {beta.template_id}
    assert ids("segments") == {beta.segment_id}
    assert ids("schedules") == {beta.schedule_id}
    assert ids("webhooks") == {beta.endpoint_id}
    assert {r["id"] for r in beta.ok("get", f"segments/{beta.segment_key}/recipients")["results"]} \
        == {beta.recipient}
    assert beta.ok("get", f"segments/{beta.segment_key}/count")["count"] == 1
    audit = beta.ok("get", "audit/logs", {"page_size": 200})["results"]
    assert audit and {row["id"] for row in audit} == set(
        AuditLog.objects.filter(client=beta.client).values_list("id", flat=True))


@pytest.mark.django_db
def test_metrics_count_only_the_callers_deliveries() -> None:
    alpha, beta = two_worlds()
    # Alpha has many more deliveries, in other statuses.
    for _ in range(3):
        alpha.ok("post", "notifications", {"recipients": [alpha.recipient],
                                           "template_id": alpha.template_key,
                                           "variables": {"name": "A"}}, expect=202)
    Delivery.objects.filter(client=alpha.client, status="pending", channel="email").update(
        status="delivered", provider="sendgrid", sent_at=timezone.now())

    rates = beta.ok("get", "metrics/delivery-rates")
    assert rates["overall"]["total"] == 2
    assert rates["overall"]["counts"] == {"pending": 1, "failed": 1}
    performance = beta.ok("get", "metrics/channel-performance")
    assert performance["providers"] == []
    backlog = beta.ok("get", "admin/queue-status")["backlog"]
    assert sum(n for statuses in backlog.values() for n in statuses.values()) == 1


# --- Ids in bodies ----------------------------------------------------------------------------

@pytest.mark.django_db
def test_retry_failed_never_redrives_another_clients_dead_letters() -> None:
    alpha, beta = two_worlds()
    alpha_changes = unchanged(alpha.client)

    for body, redriven in (({"notification_id": alpha.notification_id}, 0),
                           ({"delivery_ids": [alpha.failed_delivery_id]}, 0),
                           ({"channel": "sms"}, 1),  # the caller's own dead letter only
                           ({}, 0)):
        response = beta.api.post("/api/v1/admin/retry-failed", body, format="json")
        assert response.status_code == 202, _answer(response)
        assert response.json()["redriven"] == redriven, body

    assert alpha_changes() == []
    assert Delivery.objects.get(id=alpha.failed_delivery_id).status == "failed"
    assert Delivery.objects.get(id=beta.failed_delivery_id).status == "queued"


@pytest.mark.django_db
def test_webhook_message_ids_of_another_client_are_not_found() -> None:
    alpha, beta = two_worlds()
    alpha_changes = unchanged(alpha.client)

    replay = beta.api.post(f"/api/v1/webhooks/{beta.endpoint_id}/replay",
                           {"message_id": alpha.message_id}, format="json")
    attempts = beta.api.get(f"/api/v1/webhooks/{beta.endpoint_id}/attempts",
                            {"message_id": alpha.message_id})

    assert replay.status_code == 404
    assert attempts.status_code == 200 and attempts.json()["results"] == []
    assert alpha_changes() == []
    assert WebhookMessage.objects.get(id=alpha.message_id).endpoint_id is not None


@pytest.mark.django_db
def test_bodies_naming_another_clients_objects_are_refused() -> None:
    """Templates, recipients and segments named in a body resolve within the caller only."""
    alpha, beta = two_worlds()
    alpha_changes = unchanged(alpha.client)
    sends = Notification.objects.count()
    refused: list[tuple[str, dict[str, Any], int, str]] = [
        ("notifications", {"recipients": [beta.recipient], "template_id": alpha.template_key,
                           "variables": {"name": "x"}}, 422, "unknown_template"),
        ("notifications", {"recipients": [beta.recipient], "template_id": alpha.template_id,
                           "variables": {"name": "x"}}, 422, "unknown_template"),
        ("notifications", {"recipients": [alpha.recipient], "template_id": beta.template_key,
                           "variables": {"name": "x"}}, 422, "unknown_recipient"),
        ("notifications/bulk", {"notifications": [
            {"recipients": [beta.recipient], "template_id": alpha.template_key,
             "variables": {"name": "x"}}]}, 422, ""),
        (f"segments/{beta.segment_key}/send", {"template_id": alpha.template_key,
                                               "variables": {"name": "x"}}, 422,
         "unknown_template"),
        ("schedules", {"name": "x", "template_id": alpha.template_key,
                       "recipient_ids": [beta.recipient], "minute": "0", "hour": "9",
                       "variables": {"name": "x"}}, 422, "unknown_template"),
        ("schedules", {"name": "x", "template_id": beta.template_key, "segment": alpha.segment_key,
                       "minute": "0", "hour": "9", "variables": {"name": "x"}}, 422,
         "unknown_segment"),
        ("schedules", {"name": "x", "template_id": beta.template_key, "segment": alpha.segment_id,
                       "minute": "0", "hour": "9", "variables": {"name": "x"}}, 422,
         "unknown_segment"),
        (f"schedules/{beta.schedule_id}", {"segment": alpha.segment_key}, 422, "unknown_segment"),
    ]
    for path, body, status, code in refused:
        method = "put" if path.startswith("schedules/") else "post"
        response = getattr(beta.api, method)(f"/api/v1/{path}", body, format="json")
        assert response.status_code == status, (path, body, _answer(response))
        if code:
            assert response.json()["error"]["code"] == code, (path, body, _answer(response))
    assert Notification.objects.count() == sends
    assert alpha_changes() == []


@pytest.mark.django_db
def test_an_api_key_acts_only_for_its_own_client() -> None:
    """Nothing in a request (header, query or body) can make a key act for another client."""
    alpha, beta = two_worlds()
    response = beta.api.get("/api/v1/notifications", {"client": str(alpha.client.id)},
                            HTTP_X_CLIENT_ID=str(alpha.client.id))
    assert {n["id"] for n in response.json()["results"]} == {beta.notification_id}
    created = beta.api.post("/api/v1/segments", {"name": "s", "key": "s2", "definition": {"all": []},
                                                  "client": str(alpha.client.id)}, format="json")
    assert created.status_code == 201
    assert json.loads(created.content)["id"] in {
        str(i) for i in beta.client.segments.values_list("id", flat=True)}


@pytest.mark.django_db
def test_the_same_idempotency_key_in_two_clients_is_two_requests() -> None:
    """Idempotency keys (request records and the keys on notifications and segment sends) are
    per client: another client's key never replays someone else's response."""
    alpha, beta = two_worlds()
    headers = {"HTTP_IDEMPOTENCY_KEY": "order-1"}
    body = {"recipients": ["shared_user"], "template_id": "shared", "variables": {"name": "x"},
            "channels": ["email"]}
    for world in (alpha, beta):
        world.ok("put", "recipients/shared_user", {"email": "shared@example.com"}, expect=201)
        world.ok("post", "templates", {"key": "shared", "name": "s", "channels": ["email"],
                                       "version": {"subject": "s", "text_body": "{{ name }}"}},
                 expect=201)
    first = alpha.api.post("/api/v1/notifications", body, format="json", **headers)
    second = beta.api.post("/api/v1/notifications", body, format="json", **headers)
    segment_first = alpha.api.post(f"/api/v1/segments/{alpha.segment_key}/send",
                                   {"template_id": "shared", "variables": {"name": "x"}},
                                   format="json", **headers)
    segment_second = beta.api.post(f"/api/v1/segments/{beta.segment_key}/send",
                                   {"template_id": "shared", "variables": {"name": "x"}},
                                   format="json", **headers)

    assert first.status_code == second.status_code == 202
    assert "Idempotent-Replayed" not in second
    assert Notification.objects.get(id=second.json()["id"]).client_id == beta.client.id
    assert first.json()["id"] != second.json()["id"]
    assert segment_first.status_code == segment_second.status_code == 202, _answer(segment_second)
    [beta_sent] = segment_second.json()["notifications"]
    assert Notification.objects.get(id=beta_sent).client_id == beta.client.id


# --- The inbox: a recipient token opens its own inbox and nothing else ------------------------

INBOX_ROUTES = [r for r in ROUTES if r.name.startswith("inbox-")]


def _in_app_message(world: World, recipient: str) -> InboxMessage:
    outcome = notification_send(client=world.client, template_id=world.template_key,
                                channels=["in_app"], variables={"name": "Ada"},
                                recipients=[recipient])
    delivery_ids = [str(i) for i in outcome.notification.deliveries.values_list("id", flat=True)]
    deliveries_dispatch(delivery_ids=delivery_ids)
    return InboxMessage.objects.get(delivery_id=delivery_ids[0])


def _token_client(token: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


@pytest.mark.django_db
def test_inbox_routes_open_only_the_tokens_own_inbox() -> None:
    """Every inbox route, called with tokens that are not alpha's recipient's: beta's own
    recipient, beta's recipient with the same id as alpha's, a token naming alpha's recipient
    but signed with beta's secret, alpha's recipient's token expired or tampered. None sees or
    changes alpha's inbox; alpha's own token then works on every route."""
    alpha, beta = two_worlds()
    assert {r.name for r in INBOX_ROUTES} >= {
        "inbox-messages", "inbox-counts", "inbox-me", "inbox-read-all", "inbox-message-read",
        "inbox-message-seen", "inbox-message-unread", "inbox-message-archive"}
    alpha_message = _in_app_message(alpha, alpha.recipient)
    _in_app_message(beta, beta.recipient)
    alpha_recipient = Recipient.objects.get(client=alpha.client, external_id=alpha.recipient)
    twin = Recipient.objects.create(client=beta.client, external_id=alpha.recipient)
    beta_recipient = Recipient.objects.get(client=beta.client, external_id=beta.recipient)
    mint_inbox_token(beta.client, beta_recipient)
    beta.client.refresh_from_db()
    now = timezone.now()
    other_inboxes = {
        "beta's recipient": mint_inbox_token(beta.client, beta_recipient).token,
        "beta's recipient with alpha's id": mint_inbox_token(beta.client, twin).token,
    }
    refused = {
        "alpha's recipient signed with beta's secret": encode_inbox_token(
            secret=beta.client.inbox_signing_secret, client_id=str(alpha.client.id),
            recipient_id=alpha.recipient, expires_at=now + timedelta(minutes=5),
            issued_at=now),
        "alpha's recipient, expired": mint_inbox_token(
            alpha.client, alpha_recipient, ttl=timedelta(seconds=-120)).token,
        "alpha's recipient, tampered": mint_inbox_token(alpha.client, alpha_recipient).token[:-3]
        + "xyz",
    }
    alpha_changes = unchanged(alpha.client)
    # Alpha's recipient id is also the twin's own (beta's) id: ids and addresses decide.
    markers = (alpha.markers() - {alpha.recipient}) | {str(alpha_message.id)}
    values = {"message_id": alpha_message.id}

    for label, token in {**other_inboxes, **refused}.items():
        caller = _token_client(token)
        for route in INBOX_ROUTES:
            for method in route.methods:
                response = getattr(caller, method.lower())(route.url(values))
                where = f"{method} {route.template} with {label}"
                if label in refused:
                    assert response.status_code == 401, f"{where}: {_answer(response)}"
                elif route.params:
                    assert response.status_code == 404, f"{where}: {_answer(response)}"
                else:
                    assert response.status_code == 200, f"{where}: {_answer(response)}"
                    assert _leaks(response.content, markers) == [], where
    assert alpha_changes() == []

    own = _token_client(mint_inbox_token(alpha.client, alpha_recipient).token)
    for route in INBOX_ROUTES:
        for method in route.methods:
            response = getattr(own, method.lower())(route.url(values))
            assert response.status_code == 200, f"{method} {route.template}: {_answer(response)}"
