"""The live contract the stream process builds on: channel names, events, replay and counts."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction

from apps.inbox.live import (
    CHANNEL_PATTERN,
    channel_name,
    inbox_counts,
    messages_after,
    parse_channel,
    publish_inbox_event,
)
from apps.inbox.models import InboxMessage
from apps.inbox.services import inbox_messages_store
from apps.notifications.models import Delivery

from .conftest import Listener, SendInApp


def test_channel_names_route_to_one_inbox() -> None:
    name = channel_name("c1", "r1")
    assert name == "notifyhub:inbox:c1:r1" and CHANNEL_PATTERN == "notifyhub:inbox:*"
    assert parse_channel(name.encode()) == ("c1", "r1")
    assert parse_channel("notifyhub:other:c1:r1") is None
    assert parse_channel("notifyhub:inbox:c1") is None


@pytest.mark.django_db
def test_messages_after_replays_what_came_after_the_last_seen_id_oldest_first(
        ada: Any, send_in_app: SendInApp) -> None:
    for n in range(4):
        send_in_app("ada", name=f"N{n}")
    InboxMessage.objects.filter(seq=3).update(archived_at="2026-01-01T00:00:00Z")

    replay = messages_after(str(ada.client_id), str(ada.id), 1)

    assert [m.seq for m in replay] == [2, 4]  # archived ones are not replayed
    assert [m.seq for m in messages_after(str(ada.client_id), str(ada.id), 0, limit=2)] == [1, 2]
    assert messages_after(str(ada.client_id), str(ada.id), 4) == []
    # Another client's id never reads this inbox.
    assert messages_after("00000000-0000-4000-8000-000000000000", str(ada.id), 0) == []
    assert inbox_counts(str(ada.client_id), str(ada.id)).as_dict() == {
        "unread": 3, "unseen": 3, "total": 3}


@pytest.mark.django_db
def test_publishing_when_redis_is_down_is_logged_not_raised(
        settings: Any, caplog: Any, django_capture_on_commit_callbacks: Any) -> None:
    settings.INBOX_REDIS_URL = "redis://127.0.0.1:1/0"  # its own client (one per URL)
    with django_capture_on_commit_callbacks(execute=True):
        publish_inbox_event("c", "r", {"type": "counts", "unread": 0, "unseen": 0,
                                       "total": 0})
    assert "could not publish" in caplog.text


@pytest.mark.django_db
def test_an_event_reaches_a_pattern_subscriber(listener: Listener,
                                               django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        publish_inbox_event("c1", "r1", {"type": "counts", "unread": 1, "unseen": 1, "total": 1})
    assert listener.events() == [("notifyhub:inbox:c1:r1",
                                  {"type": "counts", "unread": 1, "unseen": 1, "total": 1})]


@pytest.mark.django_db(transaction=True)
def test_seqs_follow_commit_order_so_a_replay_never_misses_a_message(
        ada: Any, send_in_app: SendInApp) -> None:
    """A writer that took seq N holds the inbox's counter row until it commits: a second
    writer waits, and gets N+1 only after N is visible. So a reader that saw N never finds a
    smaller seq committed later."""
    send_in_app("ada")
    notification = send_in_app("ada")
    delivery = Delivery.objects.get(notification=notification)
    InboxMessage.objects.all().delete()
    item = {"client_id": str(ada.client_id), "recipient_id": str(ada.id), "category": "",
            "title": "t", "body": "b", "action_url": "", "data": {}}
    first_stored = threading.Event()
    release_first = threading.Event()
    second_done: list[float] = []

    def first_writer() -> None:
        with transaction.atomic():
            inbox_messages_store(items=[{**item, "delivery_id": str(delivery.id)}])
            first_stored.set()
            release_first.wait(5)
        connection.close()

    def second_writer() -> None:
        first_stored.wait(5)
        other = Delivery.objects.exclude(id=delivery.id).get(channel="in_app")
        with transaction.atomic():
            inbox_messages_store(items=[{**item, "delivery_id": str(other.id)}])
        second_done.append(time.monotonic())
        connection.close()

    threads = [threading.Thread(target=first_writer), threading.Thread(target=second_writer)]
    for thread in threads:
        thread.start()
    first_stored.wait(5)
    time.sleep(0.5)
    blocked = not second_done  # the second writer is waiting on the counter row
    released_at = time.monotonic()
    release_first.set()
    for thread in threads:
        thread.join(10)

    assert blocked and second_done and second_done[0] >= released_at
    seqs = dict(InboxMessage.objects.values_list("delivery_id", "seq"))
    assert seqs[delivery.id] < max(seqs.values())
