"""Channel in_app through the normal send path: stored in the recipient's inbox, `delivered`
at once, published to live connections after commit; preferences honoured, quiet hours not."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.inbox.live import channel_name
from apps.inbox.models import InboxMessage
from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Delivery
from apps.notifications.services import notification_send
from tests.factories import RecipientFactory

from .conftest import Listener, SendInApp

pytestmark = pytest.mark.django_db


def test_an_in_app_send_stores_one_message_which_is_the_delivered_delivery(
        ada: Any, send_in_app: SendInApp) -> None:
    notification = send_in_app("ada")

    delivery = Delivery.objects.get(notification=notification)
    message = InboxMessage.objects.get()
    assert (delivery.channel, delivery.status, delivery.provider) == ("in_app", "delivered", "in_app")
    assert delivery.delivered_at is not None and delivery.completed_at is not None
    assert message.delivery_id == delivery.id and message.recipient_id == ada.id
    assert delivery.provider_message_id == str(message.id)
    assert message.title == "Welcome, Ada"
    assert message.body == "Hi Ada, you are ada."
    assert message.action_url == "https://app.example.com/start?u=ada"
    assert message.data == {"order": "ORD-1", "count": 3}
    assert message.category == "updates" and message.seq == 1
    assert (message.expires_at - message.created_at).days == 90
    events = list(delivery.events.values_list("event", flat=True))
    assert events == ["accepted", "claimed", "delivered"]
    notification.refresh_from_db()
    assert notification.status == "completed"


def test_seqs_increase_per_recipient_across_sends(ada: Any, send_in_app: SendInApp,
                                                  client_tenant: Any) -> None:
    RecipientFactory(client=client_tenant, external_id="bo")
    send_in_app("ada", "bo")
    send_in_app("ada")
    send_in_app("bo", "ada")

    seqs = {r: list(InboxMessage.objects.filter(recipient__external_id=r)
                    .order_by("created_at", "seq").values_list("seq", flat=True))
            for r in ("ada", "bo")}
    assert seqs == {"ada": [1, 2, 3], "bo": [1, 2]}


def test_a_chunk_of_100_is_stored_with_one_insert_and_no_query_per_row(
        client_tenant: Any, in_app_template: Any) -> None:
    recipients = [f"user_{n}" for n in range(100)]
    outcome = notification_send(client=client_tenant, template_id="welcome",
                                channels=["in_app"], variables={"name": "A", "orderId": "1"},
                                recipients=[{"id": r} for r in recipients])
    ids = [str(i) for i in outcome.notification.deliveries.values_list("id", flat=True)]

    with CaptureQueriesContext(connection) as queries:
        deliveries_dispatch(delivery_ids=ids)

    assert InboxMessage.objects.count() == 100
    assert set(Delivery.objects.filter(id__in=ids).values_list("status", flat=True)) == {"delivered"}
    inserts = [q["sql"] for q in queries if "INSERT INTO inbox_inboxmessage" in q["sql"]]
    assert len(inserts) == 1
    assert len(queries) < 30, [q["sql"][:80] for q in queries]


def test_the_message_and_the_counts_are_published_after_commit(
        ada: Any, send_in_app: SendInApp, listener: Listener,
        django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        send_in_app("ada")
        assert listener.events(wait=0.3) == []  # nothing before the commit
    for callback in callbacks:
        callback()

    events = listener.events()
    channel = channel_name(ada.client_id, ada.id)
    assert [c for c, _ in events] == [channel, channel]
    message, counts = events[0][1], events[1][1]
    stored = InboxMessage.objects.get()
    assert message["type"] == "message" and message["seq"] == 1
    assert message["message"]["id"] == str(stored.id)
    assert message["message"]["title"] == "Welcome, Ada"
    assert counts == {"type": "counts", "unread": 1, "unseen": 1, "total": 1}


def test_a_disabled_in_app_channel_or_opted_out_category_suppresses(
        api: Any, ada: Any, send_in_app: SendInApp) -> None:
    response = api.patch("/api/v1/preferences/ada/channels/in_app", {"enabled": False},
                         format="json")
    assert response.status_code == 200, response.json()
    off = Delivery.objects.get(notification=send_in_app("ada"))
    api.patch("/api/v1/preferences/ada/channels/in_app", {"enabled": True}, format="json")
    api.post("/api/v1/preferences/ada/opt-out", {"category": "marketing"}, format="json")
    opted_out = Delivery.objects.get(notification=send_in_app("ada", category="marketing"))
    allowed = Delivery.objects.get(notification=send_in_app("ada", category="updates"))

    assert (off.status, off.error_code) == ("suppressed", "channel_disabled")
    assert (opted_out.status, opted_out.error_code) == ("suppressed", "category_opted_out")
    assert allowed.status == "delivered"
    assert InboxMessage.objects.count() == 1


def test_quiet_hours_do_not_hold_in_app_messages(api: Any, ada: Any,
                                                  send_in_app: SendInApp) -> None:
    response = api.put("/api/v1/preferences/ada", {
        "quiet_hours": {"start": "00:00", "end": "23:59", "timezone": "UTC"}}, format="json")
    assert response.status_code == 200, response.json()

    delivery = Delivery.objects.get(notification=send_in_app("ada"))

    assert delivery.status == "delivered"
    assert not delivery.events.filter(event="held").exists()


def test_a_delivery_claimed_again_after_a_lost_outcome_is_not_stored_twice(
        ada: Any, send_in_app: SendInApp) -> None:
    notification = send_in_app("ada")
    delivery = Delivery.objects.get(notification=notification)
    # As if the outcome had been lost with its worker: the sweeper hands the row out again.
    Delivery.objects.filter(id=delivery.id).update(status="queued")

    deliveries_dispatch(delivery_ids=[str(delivery.id)])

    assert InboxMessage.objects.count() == 1
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
