"""The client's retry and backoff rules, against httpx.MockTransport (the only thing mocked:
timing and failures a real server will not produce on demand). What the client does against
the real API is in test_live.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.pyclient import load_client

nh = load_client()

ACCEPTED = {"id": "0b6f0c3e-2a4f-4a55-9d0a-3c2f1c8b9e10", "status": "accepted", "deliveries": []}


def error(status: int, code: str, headers: dict[str, str] | None = None,
          fields: dict[str, list[str]] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers,
                          json={"error": {"code": code, "message": code, "fields": fields or {}}})


class Server:
    """Answers each request with the next scripted response (or raises it), and keeps what
    it was sent."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def make_client(server: Server, **kwargs: Any) -> tuple[Any, list[float]]:
    slept: list[float] = []
    retry = nh.RetryPolicy(jitter=lambda: 1.0, **kwargs)
    client = nh.Client(api_key="nh_test_key", base_url="http://notifyhub.test", retry=retry,
                       http_client=httpx.Client(transport=httpx.MockTransport(server)),
                       sleep=slept.append)
    return client, slept


def send(client: Any, **kwargs: Any) -> Any:
    return client.notifications.send(recipients=["user_1"], template_id="welcome", **kwargs)


def test_a_send_that_meets_a_503_is_retried_with_the_same_idempotency_key() -> None:
    server = Server(error(503, "service_unavailable"), error(502, "bad_gateway"),
                    httpx.Response(202, json=ACCEPTED))
    client, slept = make_client(server)

    notification = send(client)

    assert notification.id == ACCEPTED["id"]
    keys = {r.headers["Idempotency-Key"] for r in server.requests}
    request_ids = {r.headers["X-Request-Id"] for r in server.requests}
    assert len(server.requests) == 3 and len(keys) == 1 and len(request_ids) == 1
    assert slept == [0.5, 1.0]  # exponential backoff (jitter pinned to its top)


def test_every_send_gets_its_own_key_and_a_given_key_is_used_as_is() -> None:
    server = Server(*(httpx.Response(202, json=ACCEPTED) for _ in range(3)))
    client, _ = make_client(server)

    send(client)
    send(client)
    send(client, idempotency_key="order-789")

    first, second, third = (r.headers["Idempotency-Key"] for r in server.requests)
    assert first != second and third == "order-789"


def test_retry_after_is_honoured_in_seconds_and_as_an_http_date() -> None:
    server = Server(error(429, "throttled", {"Retry-After": "7"}),
                    error(503, "service_unavailable",
                          {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
                    httpx.Response(202, json=ACCEPTED))
    client, slept = make_client(server)

    send(client)

    assert slept == [7.0, 0.0]  # a date in the past: go now


def test_a_retry_after_beyond_the_limit_is_raised_not_waited_for() -> None:
    server = Server(error(429, "quota_exceeded", {"Retry-After": "36000"},
                          fields={"quota": ["0 of 100 deliveries left until 00:00 UTC."]}))
    client, slept = make_client(server)

    with pytest.raises(nh.RateLimitError) as caught:
        send(client)

    assert caught.value.code == "quota_exceeded" and caught.value.retry_after == 36000.0
    assert caught.value.fields == {"quota": ["0 of 100 deliveries left until 00:00 UTC."]}
    assert slept == [] and len(server.requests) == 1


def test_retries_stop_after_max_retries_with_the_last_error() -> None:
    server = Server(*(error(500, "server_error") for _ in range(4)))
    client, slept = make_client(server, max_retries=3, backoff_max=1.5)

    with pytest.raises(nh.ServerError) as caught:
        send(client)

    assert caught.value.status == 500 and caught.value.code == "server_error"
    assert len(server.requests) == 4 and slept == [0.5, 1.0, 1.5]  # capped at backoff_max


def test_jitter_keeps_each_wait_between_half_and_all_of_the_backoff() -> None:
    policy = nh.RetryPolicy(jitter=lambda: 0.0)
    assert [policy.backoff(n) for n in range(4)] == [0.25, 0.5, 1.0, 2.0]


def test_a_500_on_a_post_without_idempotency_is_not_retried() -> None:
    """Creating a webhook endpoint twice would make two: only a 429/503 (refused before any
    work) is retried there."""
    server = Server(error(500, "server_error"))
    client, slept = make_client(server)

    with pytest.raises(nh.ServerError):
        client.webhooks.create(url="https://example.com/hook")

    assert len(server.requests) == 1 and slept == []
    assert "Idempotency-Key" not in server.requests[0].headers


def test_connection_errors_are_retried_when_the_request_is_safe_to_repeat() -> None:
    read_lost = httpx.ReadError("connection reset")
    server = Server(httpx.ConnectError("refused"), read_lost,
                    httpx.Response(200, json={"status": "ok"}))
    client, slept = make_client(server)

    assert client.system.health().status == "ok"
    assert len(slept) == 2


def test_a_read_error_on_a_non_idempotent_post_is_raised() -> None:
    """The server may have created the endpoint already: not sent again."""
    server = Server(httpx.ReadError("connection reset"))
    client, _ = make_client(server)

    with pytest.raises(nh.APIConnectionError):
        client.webhooks.create(url="https://example.com/hook")
    assert len(server.requests) == 1


def test_a_refused_connection_is_retried_even_for_a_non_idempotent_post() -> None:
    server = Server(httpx.ConnectError("refused"), httpx.Response(201, json={"id": "e1"}))
    client, _ = make_client(server)

    assert client.webhooks.create(url="https://example.com/hook").id == "e1"


def test_idempotency_key_in_flight_is_retried_and_other_conflicts_are_not() -> None:
    server = Server(error(409, "idempotency_key_in_flight"), httpx.Response(202, json=ACCEPTED),
                    error(409, "conflict"))
    client, slept = make_client(server)

    send(client)
    with pytest.raises(nh.ConflictError):
        client.notifications.cancel("n1")
    assert len(slept) == 1


def test_a_400_is_raised_at_once_with_its_code_and_fields() -> None:
    server = Server(error(400, "invalid", fields={"recipients[0].email": ["Enter a valid email."]}))
    client, slept = make_client(server)

    with pytest.raises(nh.BadRequestError) as caught:
        send(client)
    assert caught.value.fields == {"recipients[0].email": ["Enter a valid email."]}
    assert slept == []


def test_the_async_client_retries_with_the_same_key() -> None:
    server = Server(error(503, "service_unavailable", {"Retry-After": "2"}),
                    httpx.Response(202, json=ACCEPTED))
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> Any:
        async with nh.AsyncClient(
                api_key="nh_key", base_url="http://notifyhub.test", sleep=sleep,
                http_client=httpx.AsyncClient(transport=httpx.MockTransport(server))) as client:
            return await client.notifications.send(recipients=["u"], template_id="welcome")

    notification = asyncio.run(main())

    assert notification.id == ACCEPTED["id"] and slept == [2.0]
    assert len({r.headers["Idempotency-Key"] for r in server.requests}) == 1


@pytest.mark.parametrize(("factory", "expected"), [
    (lambda: error(503, "service_unavailable"), 4),
    (lambda: httpx.ConnectError("refused"), 4),
])
def test_max_retries_zero_turns_retries_off(factory: Callable[[], Any], expected: int) -> None:
    server = Server(*(factory() for _ in range(expected)))
    client, slept = make_client(server, max_retries=0)

    with pytest.raises(nh.NotifyHubError):
        send(client)
    assert len(server.requests) == 1 and slept == []
