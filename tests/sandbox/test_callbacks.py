"""The callback dispatcher in process: one broken send never stops the others."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import aiohttp
import pytest

from sandbox.callbacks import CallbackDispatcher
from tests.sandbox.receiver import HttpReceiver


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    rcv = HttpReceiver()
    yield rcv
    rcv.close()


class FlakySigner:
    """Raises on its first call (a bug in one send), signs afterwards."""

    def __init__(self) -> None:
        self.calls = 0

    def headers(self, url: str, body: bytes) -> Mapping[str, str]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("signer bug")
        return {"X-Signature": "ok"}


def _encode(events: Sequence[Any]) -> bytes:
    return ",".join(str(event["n"]) for event in events).encode()


async def _deliver_all(dispatcher: CallbackDispatcher, events: list[dict[str, Any]]) -> dict[str, int]:
    async with aiohttp.ClientSession() as session:
        dispatcher.start(session)
        try:
            for event in events:
                dispatcher.enqueue(event)
            for _ in range(200):
                await asyncio.sleep(0.02)
                if dispatcher.pending == 0:
                    break
            return dispatcher.stats()
        finally:
            await dispatcher.stop()


def test_an_exception_in_one_send_is_retried_and_others_go_on(receiver: HttpReceiver) -> None:
    def url_for(event: dict[str, Any]) -> str:
        if event["n"] == 2:
            raise KeyError("url")  # an event that cannot be routed
        return receiver.url(f"/hook/{event['n']}")

    dispatcher = CallbackDispatcher(
        "test", "(per event)", signer=FlakySigner(), encoder=_encode, interval=0.01,
        max_batch=1, retry_base=0.05, url_for=url_for,
    )
    stats = asyncio.run(_deliver_all(dispatcher, [{"n": 1}, {"n": 2}, {"n": 3}]))

    assert sorted(r.path for r in receiver.snapshot()) == ["/hook/1", "/hook/3"]
    assert all(r.headers["X-Signature"] == "ok" for r in receiver.snapshot())
    assert stats["events_sent"] == 2
    assert stats["dropped"] == 1  # the unroutable one
    assert stats["answers_none"] == 1  # the attempt the signer broke, then retried
    assert stats["pending"] == stats["retrying"] == 0


def test_an_unencodable_batch_is_dropped_and_the_next_sent(receiver: HttpReceiver) -> None:
    def encode(events: Sequence[Any]) -> bytes:
        if events[0]["n"] == 1:
            raise ValueError("not encodable")
        return _encode(events)

    dispatcher = CallbackDispatcher(
        "test", receiver.url("/hook"), encoder=encode, interval=0.01, max_batch=1, retry_base=0.05
    )
    stats = asyncio.run(_deliver_all(dispatcher, [{"n": 1}, {"n": 2}]))

    assert [r.body for r in receiver.snapshot()] == [b"2"]
    assert (stats["events_sent"], stats["dropped"], stats["pending"]) == (1, 1, 0)
