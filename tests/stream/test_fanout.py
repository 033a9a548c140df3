"""Live events reach connections held by different stream processes: each process holds one
pattern subscription, so one publish is seen by every process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.stream import StreamProcess, open_stream


@pytest.fixture
def second_stream(stream_env: dict[str, str]) -> Iterator[StreamProcess]:
    process = StreamProcess(stream_env).start()
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def test_one_publish_reaches_the_recipients_connections_in_two_processes(
        stream: StreamProcess, second_stream: StreamProcess, inbox: Any) -> None:
    token = inbox.token()
    first = open_stream(stream.port, f"/api/v1/inbox/stream?token={token}")
    second = open_stream(second_stream.port, f"/api/v1/inbox/stream?token={token}")
    try:
        for response in (first, second):
            assert response.next_event().retry is not None
            assert response.next_named().event == "counts"

        [title] = inbox.store(1)

        for response in (first, second):
            message = response.next_named()
            assert (message.id, message.json()["title"]) == ("1", title)
        assert stream.health()["connections"] == 1
        assert second_stream.health()["connections"] == 1
    finally:
        first.close()
        second.close()
