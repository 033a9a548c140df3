"""The network guard, checked at connect time: with it on (production) no private, loopback,
link-local, metadata … address is reached, however it is spelled or resolved; with it off
(local development, tests) a receiver on 127.0.0.1 gets signed events. The connection goes to
the address that was checked."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from apps.webhooks.models import WebhookAttempt
from apps.webhooks.outbound import ssrf, transport
from apps.webhooks.outbound.delivery import webhook_messages_deliver
from apps.webhooks.outbound.services import webhook_endpoint_test
from tests.sandbox.receiver import HttpReceiver

from .support import Redirector, make_endpoint, verified


def corpus(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/hooks",
        f"http://[::1]:{port}/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        f"http://0x7f000001:{port}/hooks",
        f"http://2130706433:{port}/hooks",
        f"http://0177.0.0.1:{port}/hooks",
        f"http://127.1:{port}/hooks",
        "http://[::ffff:10.0.0.1]/hooks",
        f"http://[::ffff:127.0.0.1]:{port}/hooks",
        "http://10.0.0.1/hooks",
        "http://172.16.5.4/hooks",
        "http://192.168.1.1/hooks",
        "http://100.64.0.1/hooks",
        "http://0.0.0.0/hooks",
        "http://224.0.0.1/hooks",
        "http://[fe80::1]/hooks",
        "http://[fc00::1]/hooks",
        "http://[2002:7f00:1::]/hooks",  # 6to4 of 127.0.0.1
        "http://[64:ff9b::a00:1]/hooks",  # NAT64 of 10.0.0.1
        "http://[::127.0.0.1]/hooks",  # IPv4-compatible
        f"http://localhost:{port}/hooks",  # a name that resolves to 127.0.0.1
    ]


def post(url: str) -> transport.HttpResult:
    return transport.post(url, body=b"{}", headers={}, timeout=2)


def test_every_form_of_a_private_address_is_refused(guard_on: Any, receiver: HttpReceiver) -> None:
    port = int(receiver.base_url.rsplit(":", 1)[1])
    for url in corpus(port):
        result = post(url)
        assert result.error_code == "blocked_address", (url, result)
        assert result.status_code is None
    assert receiver.snapshot() == []


@pytest.mark.parametrize(("host", "address"), [
    ("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"), ("0x0a.0.0.1", "10.0.0.1"), ("[::1]", "::1"),
    ("example.com", None), ("0xdeadbeef.example", None),
])
def test_numeric_spellings_are_read_as_the_address_they_denote(host: str, address: str | None) -> None:
    literal = ssrf.host_literal(host)
    assert (str(literal) if literal else None) == address


def test_a_name_resolving_to_loopback_is_refused(guard_on: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssrf, "resolve", lambda host, port: [ipaddress.ip_address("127.0.0.1")])
    result = post("https://hooks.example.com/x")
    assert result.error_code == "blocked_address"
    assert "hooks.example.com" in result.error and "loopback" in result.error


def test_a_name_with_any_private_address_is_refused_whole(
    guard_on: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resolver answering a public and a private address is a rebinding attempt."""
    monkeypatch.setattr(ssrf, "resolve", lambda host, port: [ipaddress.ip_address("93.184.215.14"),
                                                             ipaddress.ip_address("10.1.2.3")])
    assert post("https://hooks.example.com/x").error_code == "blocked_address"


def test_the_connection_goes_to_the_checked_address(
    monkeypatch: pytest.MonkeyPatch, receiver: HttpReceiver
) -> None:
    """The name is resolved once, by the guard; the connection is made to that address with
    the name in the Host header. (hooks.example.test exists in no DNS: reaching the receiver
    proves nothing resolved it a second time.)"""
    port = int(receiver.base_url.rsplit(":", 1)[1])
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[Any]:
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(ssrf, "resolve", resolve)
    result = post(f"http://hooks.example.test:{port}/pinned")
    assert result.succeeded, result
    [request] = receiver.wait_for(1)
    assert request.headers["Host"] == f"hooks.example.test:{port}"
    assert request.path == "/pinned"
    assert lookups == ["hooks.example.test"]


def test_a_redirect_to_loopback_is_not_followed(guard_on: Any, settings: Any,
                                                receiver: HttpReceiver) -> None:
    # Only the redirecting server's address is allowed; it points at loopback.
    settings.WEBHOOKS_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with Redirector(receiver.url("/internal")) as redirector:
        result = post(redirector.url)
    assert (result.status_code, result.error_code) == (302, "redirect")
    assert receiver.snapshot() == []


def test_an_allowed_network_is_reached_with_the_guard_on(
    guard_on: Any, settings: Any, receiver: HttpReceiver
) -> None:
    settings.WEBHOOKS_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    assert post(receiver.url("/ok")).succeeded
    assert post("http://10.0.0.1/hooks").error_code == "blocked_address"


def test_metadata_addresses_are_refused_even_when_private_networks_are_allowed(settings: Any) -> None:
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/",
                "http://[::ffff:169.254.169.254]/", "http://0xa9fea9fe/", "http://0.0.0.0:80/"):
        assert post(url).error_code == "blocked_address", url


def test_public_addresses_pass_the_check(guard_on: Any) -> None:
    for address in ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "::ffff:8.8.8.8"):
        assert ssrf.address_refusal(ipaddress.ip_address(address)) is None, address


@pytest.mark.django_db
def test_with_private_networks_allowed_a_local_receiver_gets_signed_events(
    settings: Any, client_tenant: Any, receiver: HttpReceiver
) -> None:
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    endpoint = make_endpoint(client_tenant, receiver.url("/local"))
    message = webhook_endpoint_test(endpoint=endpoint)
    webhook_messages_deliver(message_ids=[str(message.id)])
    [request] = receiver.wait_for(1)
    assert verified(endpoint.secret, request)["type"] == "webhook.test"


@pytest.mark.django_db
def test_with_the_guard_on_the_attempt_is_logged_as_blocked(
    settings: Any, client_tenant: Any, receiver: HttpReceiver
) -> None:
    endpoint = make_endpoint(client_tenant, receiver.url("/local"))  # created while allowed
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOKS_ALLOWED_NETWORKS = []
    message = webhook_endpoint_test(endpoint=endpoint)
    webhook_messages_deliver(message_ids=[str(message.id)])
    [attempt] = WebhookAttempt.objects.all()
    assert attempt.error_code == "blocked_address" and "loopback" in attempt.error
    assert receiver.snapshot() == []
