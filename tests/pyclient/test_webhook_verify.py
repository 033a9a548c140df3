"""The client's webhook check accepts what NotifyHub's outbound webhooks really send
(apps/webhooks/outbound/signing.py), agrees with the Standard Webhooks reference library, and
refuses anything altered, stale or signed with another secret."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook

from apps.webhooks.outbound.signing import secret_generate, signed_headers
from tests.support.pyclient import client_module, load_client

nh = load_client()
webhooks = client_module("webhooks")

BODY = json.dumps({"type": "delivery.delivered", "data": {"delivery_id": "d1"}})


def headers(*secrets: str, timestamp: int | None = None, body: str = BODY) -> dict[str, str]:
    return signed_headers(secrets=list(secrets), msg_id="msg_1",
                          timestamp=int(time.time()) if timestamp is None else timestamp,
                          body=body)


def test_a_notifyhub_webhook_verifies_and_its_payload_is_returned() -> None:
    secret = secret_generate()
    signed = headers(secret)

    event = webhooks.verify(BODY.encode(), signed, secret=secret)

    assert event.type == "delivery.delivered" and event.data.delivery_id == "d1"
    assert Webhook(secret).verify(BODY, signed) == json.loads(BODY)  # the reference agrees
    assert webhooks.sign(secret=secret, msg_id="msg_1", timestamp=int(signed["webhook-timestamp"]),
                         body=BODY) == signed["webhook-signature"]


def test_during_a_rotation_either_secret_verifies() -> None:
    old, new = secret_generate(), secret_generate()
    signed = headers(new, old)

    webhooks.verify(BODY, signed, secret=old)
    webhooks.verify(BODY, signed, secret=new)
    webhooks.verify(BODY, {k.upper(): v for k, v in signed.items()}, secret=[secret_generate(), new])


@pytest.mark.parametrize("tamper", ["body", "secret", "stale", "header"])
def test_an_altered_stale_or_foreign_webhook_is_refused(tamper: str) -> None:
    secret = secret_generate()
    signed = headers(secret, timestamp=int(time.time()) - (600 if tamper == "stale" else 0))
    body = BODY.replace("d1", "d2") if tamper == "body" else BODY
    if tamper == "header":
        del signed["webhook-id"]

    with pytest.raises(nh.WebhookVerificationError):
        webhooks.verify(body, signed, secret=secret_generate() if tamper == "secret" else secret)


def test_test_keys_are_told_apart() -> None:
    assert nh.is_test_key("nh_test_abc") and not nh.is_test_key("nh_abc")
    assert nh.Client(api_key="nh_test_abc").test_mode is True
    assert nh.Client(api_key="nh_abc").test_mode is False
