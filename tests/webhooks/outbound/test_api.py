"""/api/v1/webhooks: endpoints are the client's own, the secret is shown once, rotation signs
with both secrets for a day, test pings, attempt logs and replays."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from django.urls import resolve
from django.utils import timezone
from rest_framework.test import APIClient

from apps.notifications.providers.sendgrid.receipts import SendGridWebhookView
from apps.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from apps.webhooks.outbound.delivery import webhook_messages_deliver
from tests.factories import ClientFactory, api_key_for
from tests.sandbox.receiver import HttpReceiver

from .support import Published, make_endpoint, verified

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhooks"


def create(api: APIClient, receiver: HttpReceiver, **extra: Any) -> Any:
    response = api.post(URL, {"url": receiver.url("/hooks"), **extra}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_create_shows_the_secret_once(api: APIClient, receiver: HttpReceiver) -> None:
    body = create(api, receiver, events=["delivery.failed", "notification.completed"],
                  description="Order service")

    assert body["secret"].startswith("whsec_")
    assert len(base64.b64decode(body["secret"].removeprefix("whsec_"))) >= 24
    assert body["events"] == ["delivery.failed", "notification.completed"]
    assert body["enabled"] is True and body["description"] == "Order service"
    detail = api.get(f"{URL}/{body['id']}").json()
    assert "secret" not in detail and detail["url"] == receiver.url("/hooks")
    listing = api.get(URL).json()
    assert [e["id"] for e in listing["results"]] == [body["id"]]
    assert "secret" not in listing["results"][0]
    assert "whsec_" not in str(listing)


def test_the_list_is_paginated_and_only_yours(api: APIClient, receiver: HttpReceiver) -> None:
    make_endpoint(ClientFactory(), receiver.url("/other"))
    ids = [create(api, receiver)["id"] for _ in range(3)]
    first = api.get(URL, {"page_size": 2}).json()
    assert len(first["results"]) == 2 and first["next"]
    rest = api.get(first["next"]).json()
    assert {e["id"] for e in first["results"] + rest["results"]} == set(ids)


@pytest.mark.parametrize(("url", "problem"), [
    ("ftp://example.com/hooks", "url"),
    ("https://user:pass@example.com/hooks", "url"),
    ("not a url", "url"),
])
def test_a_bad_url_is_400_with_the_field(api: APIClient, url: str, problem: str) -> None:
    response = api.post(URL, {"url": url}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert problem in response.json()["error"]["fields"]


def test_an_unknown_event_type_is_400(api: APIClient, receiver: HttpReceiver) -> None:
    response = api.post(URL, {"url": receiver.url("/"), "events": ["delivery.sent", "nope"]},
                        format="json")
    assert response.status_code == 400
    assert "events[1]" in response.json()["error"]["fields"]


def test_private_addresses_are_refused_at_creation_when_the_guard_is_on(
    api: APIClient, guard_on: Any
) -> None:
    for url in ("http://127.0.0.1:8080/hooks", "http://[::1]/x", "http://169.254.169.254/latest",
                "http://10.0.0.1/x", "http://localhost:9000/x", "http://[::ffff:10.0.0.1]/x"):
        response = api.post(URL, {"url": url}, format="json")
        assert response.status_code == 400, url
        assert "not allowed" in response.json()["error"]["fields"]["url"][0], url
    assert api.post(URL, {"url": "https://hooks.example.com/x"}, format="json").status_code == 201


def test_another_clients_endpoint_is_404_everywhere(api: APIClient, receiver: HttpReceiver) -> None:
    other = make_endpoint(ClientFactory(), receiver.url("/other"))
    calls = [
        api.get(f"{URL}/{other.id}"),
        api.delete(f"{URL}/{other.id}"),
        api.post(f"{URL}/{other.id}/rotate-secret"),
        api.post(f"{URL}/{other.id}/test"),
        api.get(f"{URL}/{other.id}/attempts"),
        api.post(f"{URL}/{other.id}/replay", {"since": timezone.now().isoformat()}, format="json"),
    ]
    for response in calls:
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    other.refresh_from_db()
    assert other.deleted_at is None


def test_delete_stops_the_endpoint_and_forgets_its_secret(api: APIClient, receiver: HttpReceiver) -> None:
    body = create(api, receiver)
    assert api.delete(f"{URL}/{body['id']}").status_code == 204
    assert api.get(f"{URL}/{body['id']}").status_code == 404
    assert api.get(URL).json()["results"] == []
    endpoint = WebhookEndpoint.objects.get(id=body["id"])
    assert endpoint.deleted_at is not None and endpoint.secret == ""


def test_provider_callback_routes_are_untouched() -> None:
    assert resolve("/api/v1/webhooks/sendgrid").func.view_class is SendGridWebhookView  # type: ignore[attr-defined]


def test_test_ping_is_signed_and_logged(
    api: APIClient, receiver: HttpReceiver, published: Published,
    django_capture_on_commit_callbacks: Any,
) -> None:
    body = create(api, receiver)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{URL}/{body['id']}/test")
    assert response.status_code == 202
    message_id = response.json()["message_id"]
    assert published.ids() == [message_id]

    webhook_messages_deliver(message_ids=published.ids())

    [request] = receiver.wait_for(1)
    payload = verified(body["secret"], request)
    assert payload["type"] == "webhook.test"
    assert request.headers["webhook-id"] == message_id
    attempts = api.get(f"{URL}/{body['id']}/attempts").json()["results"]
    assert len(attempts) == 1
    assert attempts[0]["message_id"] == message_id and attempts[0]["event_type"] == "webhook.test"
    assert attempts[0]["status_code"] == 200 and attempts[0]["succeeded"] is True
    assert attempts[0]["duration_ms"] >= 0 and attempts[0]["error"] == ""


def test_rotation_signs_with_both_secrets_for_a_day(
    api: APIClient, receiver: HttpReceiver, published: Published, settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    body = create(api, receiver)
    old_secret = body["secret"]
    rotated = api.post(f"{URL}/{body['id']}/rotate-secret")
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != old_secret
    expires = rotated.json()["previous_secret_expires_at"]
    assert expires is not None
    assert "secret" not in api.get(f"{URL}/{body['id']}").json()

    with django_capture_on_commit_callbacks(execute=True):
        api.post(f"{URL}/{body['id']}/test")
    webhook_messages_deliver(message_ids=published.ids())
    [request] = receiver.wait_for(1)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    # A receiver still on the old secret and one already on the new one both verify.
    assert verified(old_secret, request)["type"] == "webhook.test"
    assert verified(new_secret, request)["type"] == "webhook.test"

    # After the overlap only the new secret signs.
    WebhookEndpoint.objects.filter(id=body["id"]).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1))
    receiver.clear()
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        api.post(f"{URL}/{body['id']}/test")
    webhook_messages_deliver(message_ids=published.ids())
    [request] = receiver.wait_for(1)
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    assert verified(new_secret, request)["type"] == "webhook.test"
    with pytest.raises(Exception, match="No matching signature"):
        verified(old_secret, request)


def test_replay_one_message_or_everything_since(
    api: APIClient, receiver: HttpReceiver, published: Published,
    django_capture_on_commit_callbacks: Any,
) -> None:
    body = create(api, receiver)
    for _ in range(2):
        api.post(f"{URL}/{body['id']}/test")
    webhook_messages_deliver(message_ids=[str(m.id) for m in WebhookMessage.objects.all()])
    receiver.wait_for(2)
    first, second = WebhookMessage.objects.order_by("created_at")
    assert {first.status, second.status} == {"succeeded"}

    with django_capture_on_commit_callbacks(execute=True):
        one = api.post(f"{URL}/{body['id']}/replay", {"message_id": str(first.id)}, format="json")
    assert one.status_code == 202 and one.json() == {"replayed": 1}
    assert published.ids() == [str(first.id)]
    first.refresh_from_db()
    assert (first.status, first.attempts) == ("pending", 0)
    webhook_messages_deliver(message_ids=published.ids())
    replayed = receiver.wait_for(3)[-1]
    assert replayed.headers["webhook-id"] == str(first.id)  # the same id: receivers de-duplicate

    since = (first.created_at - timedelta(seconds=1)).isoformat()
    everything = api.post(f"{URL}/{body['id']}/replay", {"since": since}, format="json")
    assert everything.json() == {"replayed": 2}
    assert WebhookAttempt.objects.filter(message=first).count() == 2  # history is kept


def test_replay_needs_exactly_one_selector_and_a_message_of_this_endpoint(
    api: APIClient, receiver: HttpReceiver
) -> None:
    body = create(api, receiver)
    other = create(api, receiver)
    api.post(f"{URL}/{other['id']}/test")
    other_message = WebhookMessage.objects.get()
    replay = f"{URL}/{body['id']}/replay"
    assert api.post(replay, {}, format="json").status_code == 400
    both = api.post(replay, {"message_id": str(other_message.id), "since": timezone.now().isoformat()},
                    format="json")
    assert both.status_code == 400
    missing = api.post(replay, {"message_id": str(other_message.id)}, format="json")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_a_disabled_endpoint_refuses_test_and_replay_with_409(
    api: APIClient, receiver: HttpReceiver
) -> None:
    body = create(api, receiver)
    WebhookEndpoint.objects.filter(id=body["id"]).update(disabled_at=timezone.now(),
                                                         disabled_reason="gone")
    detail = api.get(f"{URL}/{body['id']}").json()
    assert detail["enabled"] is False and detail["disabled_reason"] == "gone"
    response = api.post(f"{URL}/{body['id']}/test")
    assert response.status_code == 409 and response.json()["error"]["code"] == "endpoint_disabled"


def test_the_endpoint_count_is_limited(api: APIClient, receiver: HttpReceiver, settings: Any) -> None:
    settings.WEBHOOKS_MAX_ENDPOINTS_PER_CLIENT = 1
    create(api, receiver)
    response = api.post(URL, {"url": receiver.url("/2")}, format="json")
    assert response.status_code == 422 and response.json()["error"]["code"] == "too_many_endpoints"


def test_no_key_is_401() -> None:
    assert APIClient().get(URL).status_code == 401


def test_keys_of_another_client_see_nothing(receiver: HttpReceiver, client_tenant: Any) -> None:
    make_endpoint(client_tenant, receiver.url("/mine"))
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(ClientFactory())}")
    assert stranger.get(URL).json()["results"] == []


def test_the_url_syntax_is_the_documented_pattern(api: APIClient, receiver: HttpReceiver) -> None:
    """The schema's pattern and the check are one regex: what one refuses, the other does."""
    for url in ("ftp://hooks.example.com/x", "https://user:pw@hooks.example.com/x",
                "https://hooks.example.com:70000/x", "https://hooks.example.com/a b",
                "https://hooks.example.com/x\n", " https://hooks.example.com/x"):
        response = api.post(URL, {"url": url}, format="json")
        assert response.status_code == 400, url
        assert list(response.json()["error"]["fields"]) == ["url"], url
    label = "a" * 63  # Django's URLValidator refused long host names the schema allowed
    assert api.post(URL, {"url": f"https://{label}.{label}.example/x"},
                    format="json").status_code == 201
