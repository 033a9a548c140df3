"""The inbox stream as a browser sees it: a real `python -m apps.stream` process, messages
stored by the inbox's service (published after commit), read over a raw socket."""

from __future__ import annotations

import json
import socket
import time
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings

from tests.support.stream import StreamProcess, open_stream

from .conftest import ORIGIN, stream_metrics

PATH = "/api/v1/inbox/stream"


def _first_counts(response: Any) -> dict[str, Any]:
    """What every stream starts with: the retry hint, then the inbox's counts."""
    hint = response.next_event()
    assert hint.retry == 3000
    counts = response.next_named()
    assert counts.event == "counts"
    return dict(counts.json())


def _messages_within(response: Any, seconds: float) -> list[str | None]:
    """The ids of the message events that arrive within `seconds` (heartbeats skipped)."""
    ids = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            event = response.next_event(timeout=remaining)
        except TimeoutError:
            break
        if event.event == "message" and event.comment is None and event.retry is None:
            ids.append(event.id)
    return ids


def test_a_new_message_is_an_event_with_its_seq_followed_by_the_counts(stream: StreamProcess,
                                                                       inbox: Any) -> None:
    response = open_stream(stream.port, f"{PATH}?token={inbox.token()}")
    try:
        assert response.status == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"].startswith("no-cache")
        assert _first_counts(response) == {"unread": 0, "unseen": 0, "total": 0}

        [title] = inbox.store(1)

        message = response.next_named()
        assert (message.event, message.id) == ("message", "1")
        body = message.json()
        assert body["title"] == title and body["seq"] == 1 and body["read_at"] is None
        counts = response.next_named()
        assert counts.event == "counts" and counts.id is None
        assert counts.json() == {"unread": 1, "unseen": 1, "total": 1}
    finally:
        response.close()


def test_the_token_may_come_as_a_bearer_header(stream: StreamProcess, inbox: Any) -> None:
    response = open_stream(stream.port, PATH, headers={"Authorization": f"Bearer {inbox.token()}"})
    try:
        assert response.status == 200
        assert _first_counts(response)["total"] == 0
    finally:
        response.close()


def test_a_heartbeat_comment_keeps_an_idle_stream_open(stream: StreamProcess, inbox: Any) -> None:
    # The stream process of these tests beats every 0.5 s (INBOX_STREAM_HEARTBEAT_SECONDS).
    response = open_stream(stream.port, f"{PATH}?token={inbox.token()}")
    try:
        _first_counts(response)
        started = time.monotonic()
        beat = response.next_event(timeout=3)
        assert beat.comment == "heartbeat"
        assert time.monotonic() - started < 2
    finally:
        response.close()


def test_reconnecting_with_last_event_id_replays_the_missed_messages_in_order(
        stream: StreamProcess, inbox: Any) -> None:
    titles = inbox.store(4)  # seqs 1..4, sent while the browser was away
    response = open_stream(stream.port, f"{PATH}?token={inbox.token()}",
                           headers={"Last-Event-ID": "1"})
    try:
        assert response.next_event().retry == 3000
        replayed = [response.next_named() for _ in range(3)]
        assert [(e.event, e.id) for e in replayed] == [("message", "2"), ("message", "3"),
                                                       ("message", "4")]
        assert [e.json()["title"] for e in replayed] == titles[1:]
        assert response.next_named().json() == {"unread": 4, "unseen": 4, "total": 4}

        [fifth] = inbox.store(1)  # live after the replay: no duplicate, no gap

        live = response.next_named()
        assert (live.id, live.json()["title"]) == ("5", fifth)
        assert response.next_named().event == "counts"
    finally:
        response.close()


def test_the_widget_can_pass_the_last_event_id_as_a_query_parameter(stream: StreamProcess,
                                                                   inbox: Any) -> None:
    inbox.store(3)
    response = open_stream(stream.port, f"{PATH}?token={inbox.token()}&last_event_id=2")
    try:
        response.next_event()
        assert response.next_named().id == "3"
        assert response.next_named().event == "counts"
    finally:
        response.close()


def test_live_events_published_out_of_order_reach_the_browser_in_order_once(
        stream: StreamProcess, inbox: Any) -> None:
    """Two publishes can race: seq 3 arriving before seq 2 is filled from the database, and
    the late seq 2 is dropped."""
    inbox.store(1)
    response = open_stream(stream.port, f"{PATH}?token={inbox.token()}",
                           headers={"Last-Event-ID": "1"})
    try:
        response.next_event()
        _ = response.next_named()  # counts
        titles = inbox.store(2)  # seqs 2 and 3, published in order by the service …
        channel = f"notifyhub:inbox:{inbox.client.pk}:{inbox.recipient.pk}"
        late = {"type": "message", "seq": 3, "message": {"seq": 3, "title": titles[1]}}
        redis.Redis.from_url(settings.INBOX_REDIS_URL).publish(channel, json.dumps(late))
        assert _messages_within(response, 3) == ["2", "3"]
    finally:
        response.close()


@pytest.mark.parametrize(("token", "code"), [
    ("", "not_authenticated"),
    ("not-a-jwt", "invalid_token"),
])
def test_a_missing_or_malformed_token_is_refused_with_401_before_the_stream(
        stream: StreamProcess, inbox: Any, token: str, code: str) -> None:
    response = open_stream(stream.port, f"{PATH}?token={token}")
    assert response.status == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code
    assert "token" in response.json()["error"]["fields"]


def test_a_tampered_or_expired_token_is_refused(stream: StreamProcess, inbox: Any) -> None:
    good = inbox.token()
    head, payload, signature = good.split(".")
    tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
    assert open_stream(stream.port, f"{PATH}?token={tampered}").json()["error"]["code"] == "invalid_token"

    from django.utils import timezone

    from apps.inbox.tokens import _signing_secret, encode_inbox_token

    now = timezone.now().replace(microsecond=0)
    expired = encode_inbox_token(secret=_signing_secret(inbox.client), client_id=str(inbox.client.pk),
                                 recipient_id=inbox.recipient.external_id,
                                 expires_at=now - timedelta(seconds=5), issued_at=now - timedelta(hours=1))
    response = open_stream(stream.port, f"{PATH}?token={expired}")
    assert response.status == 401
    assert response.json()["error"]["code"] == "token_expired"


def test_a_token_streams_its_own_recipients_inbox_only(stream: StreamProcess, inbox: Any) -> None:
    from .conftest import Inbox

    other_client = Inbox()  # another tenant, same shape
    from tests.factories import RecipientFactory

    neighbour = RecipientFactory(client=inbox.client)
    response = open_stream(stream.port, f"{PATH}?token={inbox.token()}")
    try:
        _first_counts(response)
        other_client.store(1)
        inbox.store(1, recipient=neighbour)
        [mine] = inbox.store(1)
        message = response.next_named()
        assert message.json()["title"] == mine
    finally:
        response.close()


def test_cors_answers_the_clients_allowed_origin_and_refuses_others(stream: StreamProcess,
                                                                  inbox: Any) -> None:
    allowed = open_stream(stream.port, f"{PATH}?token={inbox.token()}", headers={"Origin": ORIGIN})
    try:
        assert allowed.status == 200
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        assert allowed.headers["vary"] == "Origin"
    finally:
        allowed.close()

    refused = open_stream(stream.port, f"{PATH}?token={inbox.token()}",
                          headers={"Origin": "https://evil.example"})
    assert refused.status == 403
    assert refused.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in refused.headers

    preflight = open_stream(stream.port, PATH, method="OPTIONS", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "last-event-id"})
    assert preflight.status == 204
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "Last-Event-ID" in preflight.headers["access-control-allow-headers"]
    stranger = open_stream(stream.port, PATH, method="OPTIONS", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in stranger.headers

    expired = open_stream(stream.port, f"{PATH}?token=nope", headers={"Origin": ORIGIN})
    assert expired.status == 401
    assert expired.headers["access-control-allow-origin"] == ORIGIN  # the widget can read it


def test_bad_requests_get_clear_errors(stream: StreamProcess, inbox: Any) -> None:
    assert open_stream(stream.port, "/api/v1/other").status == 404
    post = open_stream(stream.port, f"{PATH}?token={inbox.token()}", method="POST")
    assert post.status == 405 and post.json()["error"]["code"] == "method_not_allowed"
    bad = open_stream(stream.port, f"{PATH}?token={inbox.token()}", headers={"Last-Event-ID": "x"})
    assert bad.status == 400
    assert bad.json()["error"]["fields"] == {"last_event_id": ["Must be a non-negative integer."]}
    with socket.create_connection(("127.0.0.1", stream.port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")


def test_a_slow_consumer_is_disconnected_instead_of_buffered(stream: StreamProcess, inbox: Any,
                                                            stream_env: dict[str, str]) -> None:
    """A browser that stops reading: past INBOX_STREAM_MAX_BUFFER_BYTES unsent (64 KiB in
    these tests) the connection is dropped; the browser would reconnect with Last-Event-ID."""
    response = open_stream(stream.port, f"{PATH}?token={inbox.token()}", rcvbuf=4096)
    before = stream.health()["slow_consumers_dropped"]
    counted = stream_metrics(stream_env).get(("notifyhub_stream_slow_consumers_total", ()), 0)
    channel = f"notifyhub:inbox:{inbox.client.pk}:{inbox.recipient.pk}"
    publisher = redis.Redis.from_url(settings.INBOX_REDIS_URL)
    big = "x" * 100_000
    try:
        time.sleep(0.3)  # the stream is live (its counts were written)
        for seq in range(1, 121):  # 12 MB: more than the kernel's buffers hold
            publisher.publish(channel, json.dumps({"type": "message", "seq": seq,
                                                   "message": {"seq": seq, "body": big}}))
        deadline = time.monotonic() + 10
        while stream.health()["slow_consumers_dropped"] == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stream.health()["slow_consumers_dropped"] == before + 1
        assert stream_metrics(stream_env)[("notifyhub_stream_slow_consumers_total", ())] == counted + 1
        assert response.sock is not None
        with pytest.raises((ConnectionError, OSError)):
            response.sock.settimeout(5)
            while response.sock.recv(1 << 20):
                pass
            raise ConnectionError("ended")
    finally:
        response.close()


def test_a_lost_subscription_is_made_good_from_the_database(stream: StreamProcess, inbox: Any) -> None:
    """Redis drops the stream process's pub/sub connection (a restart): it subscribes again and
    every open stream catches up from PostgreSQL, so a message published while nobody listened
    still reaches the browser, once."""
    response = open_stream(stream.port, f"{PATH}?token={inbox.token()}")
    try:
        _first_counts(response)
        before = stream.health()
        publisher = redis.Redis.from_url(settings.INBOX_REDIS_URL)
        publisher.client_kill_filter(_type="pubsub")  # every subscriber of this Redis
        [title] = inbox.store(1)

        message = response.next_named(timeout=10)
        assert (message.event, message.id, message.json()["title"]) == ("message", "1", title)
        deadline = time.monotonic() + 10
        while stream.health()["catch_ups"] == before["catch_ups"] and time.monotonic() < deadline:
            time.sleep(0.1)
        after = stream.health()
        assert after["subscribed"] and after["catch_ups"] > before["catch_ups"]
        assert _messages_within(response, 1.5) == []  # not twice
    finally:
        response.close()


def test_a_stream_ends_when_its_token_expires(stream: StreamProcess, inbox: Any) -> None:
    """A last `token_expired` event, then the connection closes: the client reconnects with a
    fresh token and Last-Event-ID (the widget does, static/notifyhub/inbox.js)."""
    response = open_stream(stream.port, f"{PATH}?token={inbox.token(ttl=timedelta(seconds=2))}")
    before = stream.health()["token_expired"]
    try:
        _first_counts(response)
        event = response.next_named(timeout=5)
        assert event.event == "token_expired"
        assert event.json()["code"] == "token_expired"
        with pytest.raises(ConnectionError):
            response.next_event(timeout=5)
        assert stream.health()["token_expired"] == before + 1
    finally:
        response.close()


def _metric(env: dict[str, str], name: str, **labels: str) -> float:
    return stream_metrics(env).get((name, tuple(sorted(labels.items()))), 0.0)


def _eventually(check: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert check()


def test_the_stream_process_exports_its_metrics(stream: StreamProcess, inbox: Any,
                                                stream_env: dict[str, str]) -> None:
    """Through PROMETHEUS_MULTIPROC_DIR, as the web's /metrics reads every process's."""
    sent = "notifyhub_stream_events_sent_total"
    messages = _metric(stream_env, sent, event="message")
    counts = _metric(stream_env, sent, event="counts")
    refused = _metric(stream_env, "notifyhub_stream_auth_failures_total", code="invalid_token")
    response = open_stream(stream.port, f"{PATH}?token={inbox.token()}")
    try:
        _first_counts(response)
        _eventually(lambda: _metric(stream_env, "notifyhub_stream_connections") == 1)
        inbox.store(1)
        assert response.next_named().event == "message"
        assert response.next_named().event == "counts"
        assert _metric(stream_env, sent, event="message") == messages + 1
        assert _metric(stream_env, sent, event="counts") == counts + 2
        assert open_stream(stream.port, f"{PATH}?token=nope").status == 401
        assert _metric(stream_env, "notifyhub_stream_auth_failures_total",
                       code="invalid_token") == refused + 1
    finally:
        response.close()
    _eventually(lambda: _metric(stream_env, "notifyhub_stream_connections") == 0)
