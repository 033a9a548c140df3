from __future__ import annotations

from typing import Any

import pytest

from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Delivery
from apps.notifications.policy import RetryPolicy, retry_policy, validate_overrides
from apps.notifications.services import notification_send
from tests.factories import ClientFactory, TemplateFactory


def test_backoff_doubles_with_jitter_is_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_attempts=5, initial_seconds=1, max_seconds=300, jitter=0.25)
    assert 0.75 <= policy.backoff(1) <= 1.25
    assert 3.0 <= policy.backoff(3) <= 5.0
    assert policy.backoff(20) <= 300
    assert policy.backoff(1, retry_after=60) >= 60


def test_channel_settings_then_client_overrides_win(settings: Any) -> None:
    settings.RETRY_POLICY_BY_CHANNEL = {"sms": {"max_attempts": 4}}
    assert retry_policy(channel="email").max_attempts == settings.DELIVERY_MAX_ATTEMPTS
    assert retry_policy(channel="sms").max_attempts == 4
    client = {"*": {"initial_seconds": 5}, "sms": {"max_attempts": 2}}
    policy = retry_policy(channel="sms", client_overrides=client)
    assert (policy.max_attempts, policy.initial_seconds) == (2, 5.0)
    email = retry_policy(channel="email", client_overrides=client)
    assert email.max_attempts == settings.DELIVERY_MAX_ATTEMPTS


@pytest.mark.parametrize("value", [[], {"fax": {}}, {"sms": {"tries": 2}}, {"sms": {"max_attempts": 0}},
                                   {"*": {"max_seconds": 100000}}, {"sms": {"jitter": "x"}}])
def test_bad_client_policies_are_refused(value: Any) -> None:
    assert validate_overrides(value)


@pytest.mark.django_db
def test_a_client_policy_decides_when_a_delivery_gives_up(clean_sandbox: Any) -> None:
    client = ClientFactory(delivery_policy={"email": {"max_attempts": 2}})
    TemplateFactory(client=client, key="welcome")
    clean_sandbox.control(provider="sendgrid", fail_status=503, fail_next=10)
    notification = notification_send(client=client, template_id="welcome", variables={"name": "x"},
                                     recipients=[{"id": "a", "email": "a@example.com"}]).notification
    delivery = notification.deliveries.get()
    for _ in range(2):
        Delivery.objects.filter(id=delivery.id).update(due_at=None)
        deliveries_dispatch(delivery_ids=[str(delivery.id)])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 2)


@pytest.mark.django_db
def test_the_admin_refuses_an_invalid_policy(admin_client: Any) -> None:
    client = ClientFactory()
    response = admin_client.post(f"/admin/clients/client/{client.pk}/change/", {
        "name": client.name, "slug": client.slug, "is_active": "on", "default_from_email": "",
        "sms_from": "", "whatsapp_from": "", "delivery_policy": '{"sms": {"max_attempts": 0}}'})
    assert response.status_code == 200  # the form is shown again with the error
    assert "max_attempts" in response.content.decode()
    client.refresh_from_db()
    assert client.delivery_policy == {}
